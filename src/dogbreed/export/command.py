"""``dogbreed-export`` (``python -m dogbreed.export``): ONNX files for a trained model.

Converts a model folder in place, or a ``model.tar.gz`` into a new tarball: ``model.onnx`` (fp32,
checked against torch), ``model.int8.onnx`` when its accuracy drop is within ``--int8-max-drop``
points, and the checks in ``model.json`` (``onnx``). The training job runs the same, in a process
of its own (:mod:`.process`), after it has written the model (hyperparameter ``export``). Without
onnx here, it re-executes itself with ``DOGBREED_ONNX_SITE`` first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from dogbreed.artifact import SPEC_FILE, resolve_model_dir
from dogbreed.atomic import write_atomically
from dogbreed.export.common import ERROR_PREFIX, ONNX_SITE_VAR, ExportError
from dogbreed.export.process import export_environment
from dogbreed.hyperparams import PARSERS, HyperparameterError, Hyperparameters
from dogbreed.image_folders import find_split_dirs

log = logging.getLogger("dogbreed.export")


def forget_pinned_google_namespace() -> None:
    """Let ``google.protobuf`` be found along ``sys.path``, the ONNX site first.

    protobuf 3.20's ``-nspkg.pth`` in the main environment pins the ``google`` namespace to its own
    folder at start-up. Python recomputes a namespace's folders when ``sys.path`` changes, which
    the working folder joining it used to do; under ``PYTHONSAFEPATH`` (child_env.py) nothing
    changes it, and onnx would meet protobuf 3.20. Forgotten, the namespace is found afresh.
    """
    google = sys.modules.get("google")
    if google is not None and getattr(google, "__file__", None) is None:  # a namespace package
        del sys.modules["google"]


def missing_runtime() -> str | None:
    """Why onnx and onnxruntime cannot be imported here, or None when they can."""
    forget_pinned_google_namespace()
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
    from dogbreed.export.to_onnx import export_model_dir  # noqa: PLC0415 (needs onnx)

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
