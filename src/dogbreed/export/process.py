"""ONNX export of a trained model: fp32 checked against torch, int8 where it is accurate enough.

``python -m dogbreed.export MODEL --data DIR`` (console script ``dogbreed-export``) converts an
artifact trained before; the training job runs the same, in a process of its own, after it has
written the model (hyperparameter ``export``). Into the model folder go ``model.onnx`` (fp32),
``model.int8.onnx`` when its accuracy drop is within ``--int8-max-drop`` points, and the checks
in ``model.json`` (``onnx``).

Why a process of its own: onnx needs protobuf >= 6.31, while the training environment pins
protobuf <= 3.20.3 for smdebug. The export process has the folder named by ``DOGBREED_ONNX_SITE``
(a ``pip install --target`` of docker/train/requirements-export.txt: onnx, onnxruntime, protobuf
and their dependencies, without numpy) first on its ``PYTHONPATH``, so its protobuf shadows the
main environment's; smdebug is never imported there. This module does not import onnx at the top,
so the training job can import it; :mod:`dogbreed.export_onnx` does the work in the export process.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from dogbreed.artifact import SPEC_FILE, resolve_model_dir
from dogbreed.atomic import write_atomically
from dogbreed.data import find_split_dirs
from dogbreed.hyperparams import PARSERS, HyperparameterError, Hyperparameters
from dogbreed.onnx_telemetry import disable_telemetry

log = logging.getLogger("dogbreed.export")

ONNX_SITE_VAR = "DOGBREED_ONNX_SITE"
#: Training images the int8 calibration sees (drawn at random with a fixed seed).
CALIBRATION_IMAGES = 256
#: Validation images on which the fp32 ONNX model must match torch.
CHECK_IMAGES = 256
BATCH = 32
#: The longest the training job waits for its export process.
TIMEOUT_S = 3600.0
ERROR_PREFIX = "dogbreed-export: error:"


class ExportError(RuntimeError):
    """The export cannot run, or its result failed a check."""


def export_environment() -> dict[str, str]:
    """The export process's environment: ``DOGBREED_ONNX_SITE`` first on ``PYTHONPATH``.

    Raises :class:`ExportError` naming the variable when it is unset (and onnx is not installed
    here) or names no folder.
    """
    env = dict(os.environ)
    disable_telemetry(env)
    site = env.get(ONNX_SITE_VAR, "").strip()
    if not site:
        if all(importlib.util.find_spec(name) for name in ("onnx", "onnxruntime")):
            return env
        raise ExportError(
            f"the ONNX export needs onnx and onnxruntime, which this Python lacks, and"
            f" {ONNX_SITE_VAR} is not set: set it to a folder holding them (pip install --target"
            f" DIR -r docker/train/requirements-export.txt; the train image sets"
            f" /opt/dogbreed/onnx-site, scripts/dev_env.sh builds build/onnx-site), or turn the"
            f" export off with the hyperparameter export=false"
        )
    if not Path(site).is_dir():
        raise ExportError(
            f"{ONNX_SITE_VAR}={site} is not a folder: point it at a pip --target folder holding"
            f" onnx and onnxruntime (docker/train/requirements-export.txt), or turn the export off"
            f" with the hyperparameter export=false"
        )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
    return env


def run_export_process(args: Sequence[str], timeout: float = TIMEOUT_S) -> None:
    """``python -m dogbreed.export ARGS`` in the export environment; its log lines pass through.

    Raises :class:`ExportError` with the process's own error line when it fails or times out.
    """
    command = [sys.executable, "-m", "dogbreed.export", *args]
    tail: deque[str] = deque(maxlen=20)
    with subprocess.Popen(
        command,
        env=export_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        expired = threading.Event()
        timer = threading.Timer(timeout, lambda: (expired.set(), process.kill()))
        timer.start()
        try:
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                tail.append(line)
            process.wait()
        finally:
            timer.cancel()
    if process.returncode == 0:
        return
    reason = next((ln.split(ERROR_PREFIX, 1)[1].strip() for ln in tail if ERROR_PREFIX in ln), "")
    if expired.is_set():
        reason = f"the export process took longer than {timeout:g} s and was stopped"
    raise ExportError(
        reason
        or f"the export process exited with {process.returncode}; its last lines:\n"
        + "".join(tail)[-1500:]
    )


def export_trained_model(
    model_dir: Path, train_dir: Path, valid_dir: Path, int8_max_drop: float
) -> None:
    """The training job's export: the model it wrote, calibrated and checked on its own data."""
    run_export_process(
        [
            str(model_dir),
            *("--train", str(train_dir), "--valid", str(valid_dir)),
            *("--int8-max-drop", repr(int8_max_drop)),
        ]
    )


def missing_runtime() -> str | None:
    """Why onnx and onnxruntime cannot be imported here, or None when they can."""
    try:
        import onnx  # noqa: F401, PLC0415
        import onnxruntime  # noqa: F401, PLC0415
    except Exception as exc:  # an ImportError, or protobuf's own errors on a version mismatch
        return f"{type(exc).__name__}: {exc}"
    return None


def _on_path(folder: str) -> bool:
    target = Path(folder).resolve()
    return any(entry and Path(entry).resolve() == target for entry in sys.path)


def write_tarball(model_dir: Path, destination: Path) -> None:
    """``model_dir``'s files as a ``model.tar.gz`` (at its root, as SageMaker packs them)."""

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
                tar.add(path, arcname=path.relative_to(model_dir).as_posix())

    write_atomically(destination, write)


def _tarball_of(model: Path) -> Path | None:
    if model.is_file():
        return model
    if model.is_dir() and not (model / SPEC_FILE).exists() and (model / "model.tar.gz").exists():
        return model / "model.tar.gz"
    return None


def convert(
    model: Path, train_dir: Path, valid_dir: Path, int8_max_drop: float, output: Path | None
) -> Path:
    """Export a model folder in place, or a ``model.tar.gz`` into a new tarball; return where."""
    from dogbreed.export_onnx import export_model_dir  # noqa: PLC0415 (needs onnx)

    tarball = _tarball_of(model)
    model_dir = resolve_model_dir(model)
    try:
        export_model_dir(model_dir, train_dir, valid_dir, int8_max_drop)
        if tarball is None:
            return model_dir
        destination = output or tarball
        write_tarball(model_dir, destination)
        return destination
    finally:
        if tarball is not None:
            shutil.rmtree(model_dir, ignore_errors=True)


def _max_drop(raw: str) -> float:
    try:
        return PARSERS["int8_max_drop"]("--int8-max-drop", raw)
    except HyperparameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dogbreed-export",
        description="Add ONNX files (fp32, and int8 when accurate enough) to a trained model.",
    )
    parser.add_argument(
        "model",
        type=Path,
        help="model folder (written in place) or model.tar.gz (rewritten with the ONNX files"
        " added, or written to --output)",
    )
    parser.add_argument(
        "--data", type=Path, help="data set folder holding train/ and valid/ (as trained on)"
    )
    parser.add_argument("--train", type=Path, help="training images (instead of --data)")
    parser.add_argument("--valid", type=Path, help="validation images (instead of --data)")
    parser.add_argument(
        "--int8-max-drop",
        type=_max_drop,
        default=Hyperparameters.int8_max_drop,
        help="ship int8 only if its validation accuracy is at most this many points below"
        " fp32's (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, help="where a converted tarball goes")
    return parser


def _split_dirs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, Path]:
    if args.data is not None:
        found = find_split_dirs({"training": args.data})
        return args.train or found["train"], args.valid or found["valid"]
    if args.train is None or args.valid is None:
        parser.error("give --data DIR, or both --train and --valid")
    return args.train, args.valid


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    logging.getLogger("dogbreed").setLevel(logging.INFO)
    logging.basicConfig(  # WARNING for the rest: the quantiser logs a line per tensor at INFO
        level=logging.WARNING,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parser = _parser()
    args = parser.parse_args(args_list)
    try:
        problem = missing_runtime()
        if problem is not None:
            site = os.environ.get(ONNX_SITE_VAR, "").strip()
            if site and _on_path(site):
                raise ExportError(f"{ONNX_SITE_VAR}={site} does not provide onnx: {problem}")
            env = export_environment()  # raises naming the variable when it is unset
            command = [sys.executable, "-m", "dogbreed.export", *args_list]
            sys.stdout.flush()
            os.execve(sys.executable, command, env)
        train_dir, valid_dir = _split_dirs(parser, args)
        written = convert(args.model, train_dir, valid_dir, args.int8_max_drop, args.output)
    except (ExportError, ValueError, OSError) as exc:  # ArtifactError, DataError are ValueErrors
        reason = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
        print(f"{ERROR_PREFIX} {reason}", file=sys.stderr, flush=True)
        return 2
    log.info("ONNX export written to %s", written)
    return 0


if __name__ == "__main__":
    # The importable module's main, so that it and dogbreed.export_onnx share one ExportError.
    from dogbreed.export import main as export_main

    sys.exit(export_main())
