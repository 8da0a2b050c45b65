"""``dogbreed-serve``: gunicorn (gthread workers) running the Flask app, as SageMaker expects.

Each worker has a thread per connection it accepts (1,024, all started before it serves:
:mod:`dogbreed.serve.worker`), so ``/ping`` never queues
behind invocations for a thread; admission control (:mod:`dogbreed.serve.admission`) keeps some
of them free under any load.

The master process stays light: it reads the settings, checks that the model directory holds a
readable ``model.json``, chooses the runtime and model file (:mod:`dogbreed.serve.runtime`) and
the batch size (:meth:`~dogbreed.serve.config.ServerSettings.for_model`), and forks the workers;
each worker loads the model itself (thread pools and CUDA contexts do not survive a fork).
SIGTERM stops accepting connections and lets in-flight requests finish (within
``GRACEFUL_TIMEOUT_S``); then each worker's inference thread ends.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from dogbreed.artifact import ArtifactError
from dogbreed.onnx_telemetry import disable_telemetry
from dogbreed.serve.allocator import AllocatorError, allocator_in_use, reexec_with_allocator
from dogbreed.serve.config import ConfigError, ServerSettings, removed_settings_in
from dogbreed.serve.readiness import ReadyWorkers
from dogbreed.serve.tuning import GRACEFUL_TIMEOUT_S, KEEPALIVE_S

log = logging.getLogger(__name__)


class ModelServer(BaseApplication):
    """A gunicorn application configured from :class:`ServerSettings`, not from a config file."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.ready_workers = ReadyWorkers(settings.workers)
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": [f"{s.host}:{s.port}"],
            "worker_class": "dogbreed.serve.worker.PrestartedThreadWorker",
            "workers": s.workers,
            "threads": s.threads,
            "worker_connections": s.worker_connections,
            "timeout": s.timeout_s,
            "graceful_timeout": GRACEFUL_TIMEOUT_S,
            "keepalive": KEEPALIVE_S,
            "preload_app": False,
            "post_fork": self.post_fork,
            "child_exit": self.child_exit,
            "worker_exit": self.worker_exit,
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "dogbreed-serve",
        }
        if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25: no shared ctl socket
            options["control_socket_disable"] = True
        for key, value in options.items():
            self.cfg.set(key, value)

    def post_fork(self, server: Any, worker: Any) -> None:
        """Spread GPU workers over the visible devices (worker ages count up from 1)."""
        if self.settings.device == "cuda":
            os.environ["DOGBREED_CUDA_INDEX"] = str(worker.age % self.settings.gpus)

    def child_exit(self, server: Any, worker: Any) -> None:
        """In the master: a worker that exits is no longer ready."""
        self.ready_workers.forget(worker.pid)

    def worker_exit(self, server: Any, worker: Any) -> None:
        """In the worker, once gthread has answered its in-flight requests (or the grace period is
        over): the inference thread finishes what is queued and ends."""
        from dogbreed.serve.app import MODEL_STATE

        state = getattr(getattr(worker, "wsgi", None), "extensions", {}).get(MODEL_STATE)
        if state is not None:
            state.stop()

    def load(self) -> Any:
        from dogbreed.serve.app import create_app

        return create_app(self.settings, self.ready_workers)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dogbreed-serve",
        description="Serve a dogbreed model over SageMaker's /ping and /invocations contract. "
        "Settings come from the environment (docs/serving.md, section Settings); options override them.",
    )
    parser.add_argument(
        "command", nargs="?", choices=["serve"], help="accepted for `docker run IMAGE serve`"
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        help="model directory or model.tar.gz (default: $SM_MODEL_DIR or /opt/ml/model)",
    )
    parser.add_argument("--host", help="address to bind (default: 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--workers", type=int, help="worker processes (default: from the hardware)")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    env = dict(os.environ)
    if args.workers is not None:
        env["MODEL_SERVER_WORKERS"] = str(args.workers)
        env.pop("SAGEMAKER_MODEL_SERVER_WORKERS", None)
    settings = ServerSettings.from_env(env)
    overrides = {
        key: value
        for key, value in (("model_dir", args.model_dir), ("host", args.host), ("port", args.port))
        if value is not None
    }
    return dataclasses.replace(settings, **overrides)


def check_model_dir(settings: ServerSettings) -> ServerSettings:
    """Fail fast, in the master, on a missing or malformed artifact; extract a tarball once; choose
    the runtime and model file that the workers load, and their batch size."""
    from dogbreed.artifact import load_spec, resolve_model_dir
    from dogbreed.serve.runtime import choose_model

    model_dir = resolve_model_dir(settings.model_dir)
    spec = load_spec(model_dir)
    choice = choose_model(model_dir, settings.runtime, settings.precision, settings.device)
    if not choice.model_file.is_file():
        raise ArtifactError(f"no {choice.model_file.name} in {model_dir}")
    settings = settings.for_model(model_dir, spec.image_size, choice)
    log.info(
        "model %s: %d classes, image size %d; serving %s with %s; %d %s worker(s) x %d threads, "
        "%d compute threads each, batches of up to %d; queue limits per worker: %d requests, "
        "%gs wait; memory allocator: %s",
        model_dir,
        spec.num_classes,
        spec.image_size,
        choice.model_file.name,
        "ONNX Runtime" if choice.runtime == "onnx" else "torch",
        settings.workers,
        settings.device,
        settings.threads,
        settings.torch_threads,
        settings.batch_size,
        settings.max_waiting_requests,
        settings.max_queue_wait_s,
        allocator_in_use(),
    )
    return settings


#: File descriptors a worker needs besides its connections (listener, logs, pipes, libraries).
FDS_BESIDES_CONNECTIONS = 256


def fit_open_file_limit(settings: ServerSettings) -> ServerSettings:
    """Raise the soft RLIMIT_NOFILE so that each worker can hold its ``worker_connections``.

    A worker that hits the limit in ``accept`` dies with all its connections, so where the hard
    limit is too low the workers get fewer threads (and connections) instead, with a warning.
    """
    needed = settings.worker_connections + FDS_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return settings
    if hard != resource.RLIM_INFINITY and hard < needed:
        threads = max(1, (hard - FDS_BESIDES_CONNECTIONS) // 2)
        log.warning(
            "open files are limited to %d: %d threads per worker instead of %d "
            "(raise `ulimit -n` to %d for them all)",
            hard,
            threads,
            settings.threads,
            needed,
        )
        settings = dataclasses.replace(settings, threads=threads)
        needed = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return settings


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    try:
        reexec_with_allocator(args_given)  # returns only where no allocator is to be preloaded
    except AllocatorError as exc:
        print(f"dogbreed-serve: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(message)s"
    )
    disable_telemetry(os.environ)  # before any worker imports onnxruntime
    args = parse_args(args_given)
    for warning in removed_settings_in(os.environ):
        log.warning(warning)
    try:
        settings = check_model_dir(fit_open_file_limit(settings_from_args(args)))
    except (ConfigError, ArtifactError) as exc:
        print(f"dogbreed-serve: {exc}", file=sys.stderr)
        return 2
    ModelServer(settings).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
