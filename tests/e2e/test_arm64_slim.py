"""The slim serve image for linux/arm64 (SageMaker Graviton, ml.c7g), built and run on this x86_64
host under qemu user-mode emulation: the image is arm64, it serves with Docker's defaults, and its
probabilities equal the same ONNX model run in process on x86_64.

Skipped unless ``DOGBREED_TEST_ARM64=1`` (``make arm64-check``): the emulated build takes many
minutes on two cores. Timings under emulation say nothing about Graviton's speed.
Run with ``-s`` to see the figures (the e2e summary repeats them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_support import FIGURES, REPO_ROOT, Container, free_port, run, unavailable, wait_for_http

from dogbreed.artifact import ModelSpec, save_artifact
from dogbreed.model import build_model
from tests.serve.conftest import (
    CLASS_NAMES,
    IMAGE_SIZE,
    export_onnx,
    jpeg_bytes,
    slim_in_process_probabilities,
    write_image_folder,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DOGBREED_TEST_ARM64") != "1",
        reason="set DOGBREED_TEST_ARM64=1 (make arm64-check): the emulated arm64 build takes minutes",
    ),
]

#: Bounds, not goals: under qemu every instruction is emulated.
BUILD_LIMIT_S = 3600
READY_LIMIT_S = 300
REQUEST_LIMIT_S = 120
#: fp32: the issue's bound (measured 2.1e-7). int8: ONNX Runtime's arm64 int8 kernels round
#: otherwise than x86_64's: measured 7.1e-3, below int8's own error against fp32 on the same
#: images (1.7e-2), and no top-1 change (docs/serving.md, Graviton). Measured on an image built by
#: hand with an aarch64 /proc/cpuinfo mounted: under qemu 7.2 the build's `import onnxruntime` dies.
TOLERANCE = {"fp32": 1e-4, "int8": 1e-2}
#: (width, height) of the JPEGs posted: below, at and well above the model's 64 px (the last ones
#: take the reduced-scale JPEG decode).
SIZES = [(48, 40), (64, 64), (90, 70), (320, 240), (640, 480)]


@pytest.fixture(scope="module")
def arm64_image(docker_engine: None) -> str:
    """``dogbreed-serve-slim:e2e-arm64``, built by build_images.sh on the arm64 slim stand-in."""
    standin = [str(REPO_ROOT / "scripts" / "build_standin_base.sh"), "--slim", "--arch", "arm64"]
    if shutil.which("debootstrap") is None:
        tag = run([*standin, "--print-tag"]).stdout.strip()
        if run(["docker", "image", "inspect", tag]).returncode != 0:
            unavailable("debootstrap is not installed, so the arm64 stand-in base cannot be built")
    build = [str(REPO_ROOT / "scripts" / "build_images.sh"), "--platform", "linux/arm64"]
    build += ["--base-image", "standin", "--tag", "e2e", "serve-slim"]
    start = time.monotonic()
    result = run(build, timeout=BUILD_LIMIT_S)
    assert result.returncode == 0, f"the arm64 build failed:\n{result.stderr[-4000:]}"
    FIGURES["arm64 slim build (stand-in base + image, docker cache)"] = (
        f"{time.monotonic() - start:.0f} s"
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def arm64_model() -> Iterator[Path]:
    """The serve tests' small ResNet18 (5 classes, 64 px) with model.onnx and model.int8.onnx,
    in a folder the image's non-root user can read."""
    root = Path(tempfile.mkdtemp(prefix="dogbreed-arm64-"))
    root.chmod(0o755)
    torch.manual_seed(1234)
    spec = ModelSpec(CLASS_NAMES, IMAGE_SIZE, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    save_artifact(root / "model", build_model(len(CLASS_NAMES)), spec)
    export_onnx(root / "model", write_image_folder(root / "data", 4), "--int8-max-drop", "100")
    (root / "model").chmod(0o755)
    for seed, size in enumerate(SIZES):
        (root / f"{size[0]}x{size[1]}.jpg").write_bytes(jpeg_bytes(seed, size=size))
    yield root / "model"
    shutil.rmtree(root, ignore_errors=True)


def inspect(image: str, field: str) -> str:
    result = run(["docker", "image", "inspect", "--format", f"{{{{.{field}}}}}", image])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_image_is_arm64(arm64_image: str) -> None:
    assert (inspect(arm64_image, "Os"), inspect(arm64_image, "Architecture")) == ("linux", "arm64")
    machine = run(["docker", "run", "--rm", "--entrypoint", "uname", arm64_image, "-m"])
    assert machine.stdout.strip() == "aarch64", machine.stderr
    size = f"{int(inspect(arm64_image, 'Size')) / 1e6:.0f} MB"
    print(f"\n{arm64_image}: linux/arm64, {size}")
    FIGURES["arm64 slim image size"] = size


def served_probabilities(port: int, image: Path) -> dict[str, float]:
    """Every class's probability, as the server answers for ``image``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=image.read_bytes(),
        headers={
            "Content-Type": "image/jpeg",
            "X-Amzn-SageMaker-Custom-Attributes": f"top_k={len(CLASS_NAMES)}",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=REQUEST_LIMIT_S) as response:
        assert response.status == 200
        return {p["label"]: p["probability"] for p in json.load(response)["predictions"][0]}


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_emulated_arm64_serves_what_x86_computes(
    arm64_image: str, arm64_model: Path, precision: str
) -> None:
    model_file = {"int8": "model.int8.onnx", "fp32": "model.onnx"}[precision]
    images = sorted(arm64_model.parent.glob("*.jpg"))
    want = slim_in_process_probabilities(arm64_model, model_file, images)
    port = free_port()
    args = ["-p", f"127.0.0.1:{port}:8080", "-v", f"{arm64_model}:/opt/ml/model:ro"]
    start = time.monotonic()
    with Container([*args, "-e", f"DOGBREED_PRECISION={precision}", arm64_image, "serve"]) as srv:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=READY_LIMIT_S)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{srv.read_logs()[-3000:]}")
        cold_start = time.monotonic() - start
        start = time.monotonic()
        served = {path: served_probabilities(port, path) for path in images}
        per_request = (time.monotonic() - start) / len(images)
        log = srv.read_logs()
    assert f"serving {model_file} with ONNX Runtime" in log, log[-3000:]
    differences = [
        np.abs(np.array([served[path][name] for name in CLASS_NAMES]) - want[path]).max()
        for path in images
    ]
    line = (
        f"max |arm64 served - x86_64 in process| {max(differences):.2e} over {len(images)} JPEGs "
        f"(tolerance {TOLERANCE[precision]:g}); cold start (docker run -> /ping 200) "
        f"{cold_start:.1f} s, {per_request:.2f} s a request, emulated"
    )
    print(f"\narm64 {precision}: {line}")
    FIGURES[f"arm64 slim {precision} under qemu"] = line
    assert max(differences) <= TOLERANCE[precision]
