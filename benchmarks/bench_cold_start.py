"""Serve image cold start: ``docker run IMAGE serve`` -> ``/ping`` 200, and the image sizes.

Run (from the repository root, with the images built: ``make images``)::

    .venv/bin/python benchmarks/bench_cold_start.py
    .venv/bin/python benchmarks/bench_cold_start.py --serve-image dogbreed-serve:e2e --runs 5

It writes a ResNet18 artifact (133 classes, image size 224, seeded random weights: start-up does not
depend on the weights) and, ``--runs`` times, starts the serve image on it (CPU, published on
127.0.0.1) and polls ``/ping`` every 50 ms until it answers 200, then times the first
``/invocations``. In the same run it measures the floor no server can beat: a container of the same
image that only imports torch and exits. It prints the median cold start against the goal
(<= 10 s) and against that floor, and the sizes of both images.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch
from PIL import Image
from serve_support import free_port

from dogbreed.artifact import ModelSpec, save_artifact
from dogbreed.model import build_model

GOAL_S = 10.0


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def write_model(model_dir: Path) -> None:
    torch.manual_seed(0)
    classes = [f"Breed_{i:03d}" for i in range(133)]
    spec = ModelSpec(classes, 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    save_artifact(model_dir, build_model(len(classes)), spec)


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((300, 300), 40).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def wait_ping(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"/ping did not answer 200 within {timeout:.0f} s")


def cold_start(image: str, model_dir: Path, body: bytes) -> tuple[float, float]:
    """Seconds from ``docker run`` to /ping 200, and the first /invocations' latency."""
    port = free_port()
    name = f"dogbreed-bench-{port}"
    start = time.monotonic()
    started = docker(
        "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
        "-v", f"{model_dir}:/opt/ml/model:ro", image, "serve",
    )  # fmt: skip
    if started.returncode != 0:
        sys.exit(f"docker run failed: {started.stderr.strip()}")
    try:
        wait_ping(port, timeout=120)
        ready = time.monotonic() - start
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "image/jpeg"}
        )
        first = time.monotonic()
        with urllib.request.urlopen(request, timeout=60) as response:
            json.load(response)
        return ready, time.monotonic() - first
    except TimeoutError:
        print(docker("logs", name).stderr[-3000:], file=sys.stderr)
        raise
    finally:
        docker("rm", "-f", name)


def torch_floor(image: str) -> float:
    """A container of the same image that imports torch and exits: the floor for any server."""
    start = time.monotonic()
    result = docker("run", "--rm", "--entrypoint", "python", image, "-c", "import torch")
    if result.returncode != 0:
        sys.exit(f"the floor run failed: {result.stderr.strip()}")
    return time.monotonic() - start


def size_gb(image: str) -> float:
    result = docker("image", "inspect", "--format", "{{.Size}}", image)
    if result.returncode != 0:
        sys.exit(f"no image {image}: build it with `make images` (or pass --*-image)")
    return int(result.stdout) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-image", default="dogbreed-serve:latest")
    parser.add_argument("--train-image", default="dogbreed-train:latest")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    sizes = {
        role: size_gb(image)
        for role, image in (("train", args.train_image), ("serve", args.serve_image))
    }
    body = jpeg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        write_model(model_dir)
        docker("run", "--rm", "--entrypoint", "true", args.serve_image)  # page the image in once
        floors, readies, firsts = [], [], []
        for run in range(1, args.runs + 1):
            floors.append(torch_floor(args.serve_image))
            ready, first = cold_start(args.serve_image, model_dir, body)
            readies.append(ready)
            firsts.append(first)
            print(f"run {run}: /ping 200 after {ready:.2f} s, first /invocations {first * 1000:.0f} ms, "
                  f"torch-import floor {floors[-1]:.2f} s")  # fmt: skip

    median, floor = statistics.median(readies), statistics.median(floors)
    print(f"\nserve cold start (docker run ... serve -> /ping 200, CPU, {args.runs} runs): "
          f"median {median:.2f} s, min {min(readies):.2f} s, max {max(readies):.2f} s")  # fmt: skip
    print(
        f"  vs goal {GOAL_S:.0f} s: {median / GOAL_S:.2f}x ({'met' if median <= GOAL_S else 'MISSED'})"
    )
    print(f"  vs floor (container start + import torch, same image, same run) {floor:.2f} s: "
          f"{median / floor:.2f}x")  # fmt: skip
    print(f"  first /invocations after ready: median {statistics.median(firsts) * 1000:.0f} ms")
    print(f"image sizes: train {args.train_image} {sizes['train']:.2f} GB, "
          f"serve {args.serve_image} {sizes['serve']:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
