"""The training job's side of the ONNX export: run it in a process of its own, and wait, bounded.

Why a process of its own: onnx needs protobuf >= 6.31, while the training environment pins
protobuf <= 3.20.3 for smdebug. The export process has the folder named by ``DOGBREED_ONNX_SITE``
(a ``pip install --target`` of docker/train/requirements-export.txt: onnx, onnxruntime, protobuf
and their dependencies, without numpy) first on its ``PYTHONPATH``, so its protobuf shadows the
main environment's; smdebug is never imported there. This module imports neither onnx nor torch;
:mod:`dogbreed.export.command` runs in the export process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from dogbreed.child_env import safe_child_env
from dogbreed.export.common import ERROR_PREFIX, ONNX_SITE_VAR, ExportError
from dogbreed.onnx_telemetry import disable_telemetry

#: The longest the training job waits for its export process.
TIMEOUT_S = 3600.0


def export_environment() -> dict[str, str]:
    """The export process's environment: ``DOGBREED_ONNX_SITE`` first on ``PYTHONPATH``.

    Raises :class:`ExportError` naming the variable when it is unset (and onnx is not installed
    here) or names no folder.
    """
    env = safe_child_env(os.environ)
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
