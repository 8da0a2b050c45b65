"""The sagemaker-training toolkit's entry into our job (``SAGEMAKER_TRAINING_MODULE``).

The toolkit's ``train`` command imports this module and calls :func:`train`, which checks the
hyperparameters before any work, then runs ``python -m dogbreed.train ARGS`` as a child process
(torchrun, through :mod:`dogbreed.train.ranks`, with one process per GPU and per host when there is
more than one of either), forwarding SIGTERM so that a stopped or interrupted job checkpoints and
exits promptly. A child killed by a signal (the out-of-memory killer's SIGKILL) can write no
failure reason itself: this entry writes it, naming the signal and its likely cause.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from sagemaker_training import environment, errors

from dogbreed.child_env import safe_child_env
from dogbreed.hyperparams import HyperparameterError, parse_hyperparameters
from dogbreed.train.failures import describe_signal
from dogbreed.train.job_paths import JobPaths

log = logging.getLogger(__name__)

#: Processes per host; default one per GPU, or one on a CPU-only host.
PROCS_PER_HOST_ENV = "DOGBREED_PROCESSES_PER_HOST"
MASTER_PORT_ENV = "DOGBREED_MASTER_PORT"
DNS_WAIT_SECONDS = 15 * 60


def processes_per_host(num_gpus: int) -> int:
    raw = os.environ.get(PROCS_PER_HOST_ENV)
    if raw is None:
        return max(1, num_gpus)
    if not raw.isdigit() or int(raw) < 1:
        raise errors.ClientError(f"{PROCS_PER_HOST_ENV} must be an integer >= 1; got {raw!r}")
    return int(raw)


def wait_for_host(host: str, timeout: float = DNS_WAIT_SECONDS) -> None:
    """Multi-host jobs start before every container's name resolves: wait for the master's."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror:
            if time.monotonic() > deadline:
                raise errors.ClientError(
                    f"host {host} did not resolve within {timeout:.0f} s"
                ) from None
            time.sleep(2)


def build_command(hosts: list[str], current_host: str, num_gpus: int, args: list[str]) -> list[str]:
    """The child command: plain python for one process, torchrun for several or several hosts."""
    nproc = processes_per_host(num_gpus)
    program = ["-m", "dogbreed.train", *args]
    if nproc == 1 and len(hosts) <= 1:
        return [sys.executable, *program]
    launcher = [sys.executable, "-m", "dogbreed.train.ranks", f"--nproc-per-node={nproc}"]
    if len(hosts) <= 1:
        return [*launcher, "--standalone", *program]
    master = sorted(hosts)[0]
    return [
        *launcher,
        f"--nnodes={len(hosts)}",
        f"--node-rank={sorted(hosts).index(current_host)}",
        f"--master-addr={master}",
        f"--master-port={os.environ.get(MASTER_PORT_ENV, '29500')}",
        *program,
    ]


def run_child(command: list[str], env: dict[str, str]) -> int:
    """Run the job, passing SIGTERM/SIGINT on to it; return its exit code."""
    child = subprocess.Popen(command, env=safe_child_env(env))

    def forward(signum: int, frame: object) -> None:
        log.warning("forwarding signal %d to the training process", signum)
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train() -> None:
    """Called by the toolkit's ``train``; raises ``ClientError`` so the toolkit reports failure."""
    env = environment.Environment()
    paths = JobPaths.from_env()
    # The toolkit writes output/failure without creating output/ (SageMaker always has it; a
    # local tree may not, and the toolkit would then exit 0 on failure). A re-run starts clean.
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("failure", "success"):
        (paths.output_dir / stale).unlink(missing_ok=True)
    args = env.to_cmd_args()
    try:
        parse_hyperparameters(args)
    except HyperparameterError as exc:
        message = f"HyperparameterError: {exc}"
        paths.write_failure(message)
        raise errors.ClientError(message) from None
    if len(env.hosts) > 1:
        wait_for_host(sorted(env.hosts)[0])
    command = build_command(list(env.hosts), env.current_host, env.num_gpus, args)
    child_env = {**os.environ, **env.to_env_vars()}
    child_env.setdefault("SAGEMAKER_BASE_DIR", str(paths.base))
    log.info("running: %s", " ".join(command))
    code = run_child(command, child_env)
    if code < 0:
        paths.write_failure(describe_signal(-code, "the training process"))
    if code != 0:
        raise errors.ExecuteUserScriptError(cmd=command, return_code=code)
