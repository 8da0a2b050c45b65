"""What the serving benchmarks share, without torch (the slim venv runs it too): photo-like JPEGs,
timing, a server under test on 127.0.0.1, a keep-alive load generator and the verdict line."""

from __future__ import annotations

import http.client
import io
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs of about 300x300: smooth gradients, a few shapes, sensor-like noise."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        width, height = (int(v) for v in rng.integers(280, 340, 2))
        y, x = np.mgrid[0:height, 0:width] / max(width, height)
        base = rng.uniform(40, 200, 3) + rng.uniform(-80, 80, 3) * x[..., None]
        base = base + rng.uniform(-60, 60, 3) * y[..., None]
        pixels = np.clip(base + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
            size = int(rng.integers(20, 120))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x0, y0, x0 + size, y0 + size), fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def throughput(run_round: Callable[[], object], images_per_round: int, seconds: float) -> float:
    """Images per second of ``run_round`` repeated for about ``seconds``."""
    rounds = max(1, int(seconds / max(1e-3, timed(run_round, 1)[0])))
    return images_per_round * rounds / sum(timed(run_round, rounds))


class ServerUnderTest:
    """``serve`` (a ``dogbreed-serve`` script) on 127.0.0.1:``port`` with ``env`` added."""

    def __init__(
        self, model_dir: Path, port: int, env: dict[str, str], log_path: Path, serve: Path
    ) -> None:
        full_env = {
            **os.environ,
            "SAGEMAKER_BIND_TO_PORT": str(port),
            **env,
        }
        self.port = port
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(serve), "--model-dir", str(model_dir), "--host", "127.0.0.1"],
                env=full_env,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_path.read_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(self.log_path.read_text())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def load_test(port: int, jpegs: list[bytes], concurrency: int, seconds: float) -> dict[str, float]:
    """``concurrency`` keep-alive clients posting JPEGs for ``seconds``; img/s, p50, p99."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start_line = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start_line.wait()
        n = index
        while time.perf_counter() < stop_at[0]:
            body = jpegs[n % len(jpegs)]
            n += concurrency
            t0 = time.perf_counter()
            conn.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            payload = response.read()
            latencies[index].append(time.perf_counter() - t0)
            if response.status != 200:
                errors.append(f"{response.status} {payload[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    flat = sorted(t for per_client in latencies for t in per_client)
    return {
        "rate": len(flat) / elapsed,
        "p50_ms": 1000 * flat[len(flat) // 2],
        "p99_ms": 1000 * flat[min(len(flat) - 1, int(len(flat) * 0.99))],
        "requests": len(flat),
    }


def verdict(name: str, ratios: list[float], goal: float, at_least: bool) -> str:
    median = statistics.median(ratios)
    met = median >= goal if at_least else median <= goal
    return (
        f"  {name}: median {median:.2f} (pairs {min(ratios):.2f}-{max(ratios):.2f}), "
        f"goal {'>=' if at_least else '<='} {goal}: {'OK' if met else 'MISSED'}"
    )
