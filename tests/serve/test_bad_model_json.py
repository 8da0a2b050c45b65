"""`dogbreed-serve` and `dogbreed-export` refuse a bad model.json with exit 2 and its reason
(issue 23, finding 5; tests/train/test_model_spec.py checks every field).

On da1db7c (one worker): ``format_version: "1"`` gave a TypeError traceback and exit 1 from both
commands; ``image_size: 1000000`` started the server, whose worker died at warm-up ("Unable to
allocate 2.73 TiB"; exit 3 after 3.9 s); ``std: [0, 0, 0]`` served (still up after 60 s);
``class_names: "abc"`` failed in the worker on the weights (exit 3). Now each exits 2 in about
0.2 s, before any worker starts, with the field named on stderr and no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ONNX_SITE, SERVE_BIN, SLIM_SERVE_BIN, free_port, write_image_folder

EXPORT_BIN = Path(sys.executable).with_name("dogbreed-export")
#: Enough for the server to read model.json and give up, far less than it takes to start.
TIMEOUT_S = 60


def bad_copy(model_dir: Path, folder: Path, **fields: Any) -> Path:
    """``model_dir`` (the session's tiny artifact) copied, with ``fields`` over its model.json."""
    copy = folder / "model"
    shutil.copytree(model_dir, copy)
    spec = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**spec, **fields}))
    return copy


CASES = {
    "format_version": ("1", "format_version is '1'; expected an integer from 1 to 1"),
    "image_size": (1_000_000, "image_size is 1000000; expected an integer from 32 to 1024"),
    "std": ([0, 0, 0], "std is [0, 0, 0]; expected 3 finite numbers"),
    "class_names": ("abc", "class_names is 'abc'; expected a non-empty list"),
}


@pytest.mark.parametrize(
    ("field", "serve_bin"),
    [*((field, SERVE_BIN) for field in CASES), ("image_size", SLIM_SERVE_BIN)],
    ids=[*CASES, "image_size-slim"],
)
def test_the_server_exits_2_naming_the_field(
    model_dir: Path, tmp_path: Path, field: str, serve_bin: Path
) -> None:
    assert serve_bin.exists(), f"{serve_bin} missing: `make venv` installs the console script"
    value, says = CASES[field]
    copy = bad_copy(model_dir, tmp_path, **{field: value})
    env = {**os.environ, "SM_MODEL_DIR": str(copy), "SAGEMAKER_BIND_TO_PORT": str(free_port())}
    result = subprocess.run(
        [str(serve_bin), "serve", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert (
        f"dogbreed-serve: {copy / 'model.json'} is not a valid model spec: {says}" in result.stderr
    ), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_the_export_exits_2_naming_the_field(model_dir: Path, tmp_path: Path) -> None:
    copy = bad_copy(model_dir, tmp_path, format_version="1")
    data = write_image_folder(tmp_path / "data", per_class=1)
    env = {**os.environ, "DOGBREED_ONNX_SITE": str(ONNX_SITE)}
    result = subprocess.run(
        [
            str(EXPORT_BIN),
            str(copy),
            "--train",
            str(data / "train"),
            "--valid",
            str(data / "valid"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 2,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert (
        f"ArtifactError: {copy / 'model.json'} is not a valid model spec: format_version is '1'"
        in result.stderr
    ), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (copy / "model.onnx").exists()


@pytest.mark.parametrize(
    ("serve_bin", "says"),
    [
        (
            SERVE_BIN,
            "model.pt does not match model.json: it outputs 5 classes, but model.json names 4",
        ),
        (SLIM_SERVE_BIN, "model.int8.onnx outputs 5 classes, but model.json names 4"),
    ],
    ids=["torch", "slim"],
)
def test_a_class_count_unlike_the_models_stops_the_server_naming_both(
    onnx_model_dir: Path, tmp_path: Path, serve_bin: Path, says: str
) -> None:
    """model.json naming 4 breeds beside weights for 5. On 86f3213 the slim server started and
    answered 500 (IndexError) whenever the 5th output ranked in a request's top k."""
    names = json.loads((onnx_model_dir / "model.json").read_text())["class_names"]
    assert len(names) == 5
    copy = bad_copy(onnx_model_dir, tmp_path, class_names=names[:-1])
    env = {**os.environ, "SM_MODEL_DIR": str(copy), "SAGEMAKER_BIND_TO_PORT": str(free_port())}
    result = subprocess.run(
        [str(serve_bin), "serve", "--host", "127.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-2000:]  # the worker failed to boot: gunicorn stops
    assert says in output, output[-2000:]
