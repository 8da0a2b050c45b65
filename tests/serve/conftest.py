"""Fixtures for the server tests: a tiny real model artifact, test images, real gunicorn servers."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import torch
from PIL import Image

from dogbreed.artifact import ModelSpec, save_artifact
from dogbreed.model import build_model

#: The labels a training job writes for folders 001.Affenpinscher ... (see write_image_folder).
CLASS_NAMES = ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita", "Alaskan_malamute"]
IMAGE_SIZE = 64
SERVE_BIN = Path(sys.executable).with_name("dogbreed-serve")
REPO = Path(__file__).resolve().parents[2]
#: The torch-free server: `make venv` installs dogbreed[slim] (ONNX Runtime, no torch) there.
SLIM_VENV = REPO / ".venv-slim"
SLIM_SERVE_BIN = SLIM_VENV / "bin" / "dogbreed-serve"
ONNX_SITE = REPO / "build" / "onnx-site"
#: In the slim venv: an artifact's ONNX model run in process on image files, with the same
#: preprocessing as the training job's evaluation; prints {path: probabilities}.
_SLIM_IN_PROCESS = """
import json, sys
from pathlib import Path
from dogbreed.artifact import load_spec
from dogbreed.imaging import load_eval_array
from dogbreed.serve.onnx_runtime import OnnxRuntime
model_dir, model_file, *paths = sys.argv[1:]
spec = load_spec(Path(model_dir))
runtime = OnnxRuntime(Path(model_dir) / model_file, 1, "in process")
rows = {p: load_eval_array(Path(p), spec.image_size, spec.mean, spec.std)[None] for p in paths}
print(json.dumps({p: runtime.forward(row)[0].tolist() for p, row in rows.items()}))
"""


def textured_pixels(height: int, width: int, seed: int) -> np.ndarray:
    """Gradients plus noise: an image whose classes differ (flat colours would all look alike)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.02, 0.2, 3)
    channels = [127 + 100 * np.sin(freq[c] * (x + (c + 1) * y) + phase[c]) for c in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 20, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def encode(image: Image.Image, fmt: str, **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def jpeg_bytes(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    return encode(Image.fromarray(textured_pixels(size[1], size[0], seed)), "JPEG", quality=90)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1234)
    model = build_model(len(CLASS_NAMES))
    # Random BatchNorm statistics so the seeded model gives distinct, image-dependent outputs.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("artifact") / "model"
    spec = ModelSpec(
        class_names=CLASS_NAMES,
        image_size=IMAGE_SIZE,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    save_artifact(path, model, spec)
    return path


def export_onnx(model_dir: Path, data_dir: Path, *extra: str) -> None:
    """Add the ONNX files to ``model_dir`` with the training job's exporter (`dogbreed-export`)."""
    assert ONNX_SITE.is_dir(), f"{ONNX_SITE} missing: `make venv` builds it"
    env = {**os.environ, "DOGBREED_ONNX_SITE": str(ONNX_SITE)}
    command = [sys.executable, "-m", "dogbreed.export", str(model_dir)]
    command += ["--train", str(data_dir / "train"), "--valid", str(data_dir / "valid")]
    result = subprocess.run(
        [*command, *extra], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def write_image_folder(root: Path, per_class: int) -> Path:
    """train/ and valid/ ImageFolder splits of textured JPEGs, one folder per class."""
    for split_index, split in enumerate(("train", "valid")):
        for class_index, name in enumerate(CLASS_NAMES):
            folder = root / split / f"{class_index + 1:03d}.{name}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                seed = 1000 * split_index + 100 * class_index + i
                (folder / f"{i}.jpg").write_bytes(jpeg_bytes(seed, size=(90, 70)))
    return root


@pytest.fixture(scope="session")
def onnx_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's artifact with model.onnx and model.int8.onnx beside model.pt.

    Random weights on random images leave accuracy to chance, so int8 ships whatever its drop.
    """
    path = tmp_path_factory.mktemp("onnx-artifact") / "model"
    shutil.copytree(model_dir, path)
    data = write_image_folder(tmp_path_factory.mktemp("onnx-data"), per_class=4)
    export_onnx(path, data, "--int8-max-drop", "100")
    return path


def slim_in_process_probabilities(
    model_dir: Path, model_file: str, paths: list[Path]
) -> dict[Path, np.ndarray]:
    """``model_file`` of ``model_dir`` run in process by ONNX Runtime, in the slim venv."""
    result = subprocess.run(
        [str(SLIM_VENV / "bin" / "python"), "-c", _SLIM_IN_PROCESS, str(model_dir), model_file]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    return {Path(p): np.asarray(row, dtype=np.float32) for p, row in rows.items()}


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per awkward case the server must handle (modes, formats, EXIF orientation)."""
    out = tmp_path_factory.mktemp("images")
    rgb = Image.fromarray(textured_pixels(60, 80, seed=7))
    large = Image.fromarray(textured_pixels(300, 400, seed=10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(textured_pixels(60, 80, seed=8)[:, :, 0]))
    cases = {
        "rgb.jpg": encode(rgb, "JPEG", quality=90),
        "exif_rotated.jpg": encode(rgb, "JPEG", quality=90, exif=exif),
        "gray.jpg": encode(rgb.convert("L"), "JPEG"),
        "cmyk.jpg": encode(rgb.convert("CMYK"), "JPEG"),
        "rgb.png": encode(rgb, "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "palette.png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette_transparent.gif": encode(rgb.convert("P"), "GIF", transparency=0),
        "gray16.png": encode(
            Image.fromarray(textured_pixels(60, 80, 9)[:, :, 0].astype(np.uint16) * 256), "PNG"
        ),
        "la.png": encode(rgb.convert("LA"), "PNG"),
        "rgb.webp": encode(rgb, "WEBP"),
        # Large enough for a reduced-scale JPEG decode (short side >= 2x the resize size).
        "large_rgb.jpg": encode(large, "JPEG", quality=90),
        "large_exif_rotated.jpg": encode(large, "JPEG", quality=90, exif=exif),
        "large_gray.jpg": encode(large.convert("L"), "JPEG"),
        "large_cmyk.jpg": encode(large.convert("CMYK"), "JPEG"),
    }
    for name, data in cases.items():
        (out / name).write_bytes(data)
    return {name: out / name for name in cases}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A real ``dogbreed-serve`` process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def worker_pids(self) -> set[int]:
        return {child.pid for child in psutil.Process(self.process.pid).children()}

    def worker_rss(self) -> dict[int, int]:
        return {
            child.pid: child.memory_info().rss
            for child in psutil.Process(self.process.pid).children()
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def post_jpeg(self, seed: int, timeout: float = 30, **headers: str) -> requests.Response:
        """POST one small generated JPEG (:func:`jpeg_bytes`) to /invocations."""
        return requests.post(
            f"{self.url}/invocations",
            data=jpeg_bytes(seed),
            headers={"Content-Type": "image/jpeg", **headers},
            timeout=timeout,
        )

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until /ping answers 200 (which it does only once every worker is ready)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                ping = requests.get(f"{self.url}/ping", timeout=2).status_code
            except requests.RequestException:  # not listening yet, or workers still booting
                ping = None
            if ping == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout_s}s:\n{self.log()}")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(
    model_dir: Path,
    log_dir: Path,
    preexec_fn: Callable[[], None] | None = None,
    serve_bin: Path = SERVE_BIN,
    **env: str,
) -> Server:
    """Start ``dogbreed-serve serve`` with ``env`` added (``preexec_fn`` runs in the child)."""
    assert serve_bin.exists(), f"{serve_bin} missing: `make venv` installs the console script"
    port = free_port()
    full_env = {
        **os.environ,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(model_dir),
        **env,
    }
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(serve_bin), "serve", "--host", "127.0.0.1"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
    return Server(process, f"http://127.0.0.1:{port}", log_path)


@pytest.fixture(scope="session")
def server(torch_server: Server) -> Server:
    """The shared server most tests use: torch (test_http.py runs against both runtimes)."""
    return torch_server


def shared_server(model_dir: Path, log_dir: Path, serve_bin: Path) -> Iterator[Server]:
    """Two workers sharing the two cores (one compute thread each), a 1 MiB payload limit."""
    srv = start_server(
        model_dir,
        log_dir,
        serve_bin=serve_bin,
        MODEL_SERVER_WORKERS="2",
        SAGEMAKER_MAX_PAYLOAD_IN_MB="1",
    )
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def torch_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The tests' shared server: torch."""
    yield from shared_server(model_dir, tmp_path_factory.mktemp("logs"), SERVE_BIN)


@pytest.fixture(scope="session")
def slim_server(onnx_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The torch-free server (ONNX Runtime, int8) with the shared server's settings."""
    yield from shared_server(onnx_model_dir, tmp_path_factory.mktemp("slim-logs"), SLIM_SERVE_BIN)
