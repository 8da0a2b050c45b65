"""Serving benchmark: the server over HTTP against in-process limits measured in the same run.

Run (from the repository root, on a quiet machine; about 5 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_serve.py
    .venv/bin/python benchmarks/bench_serve.py --env MODEL_SERVER_WORKERS=2   # another layout

It builds a ResNet18 artifact (133 classes, image size 224, seeded random weights: speed does not
depend on the weights), writes ``--images`` JPEG files of about 300x300 pixels (gradients, shapes
and noise, so decoding costs what a photo costs), then measures

(a) in-process, with every core: the model alone on preprocessed batches (channels_last,
    inference_mode) at several batch sizes, and the whole pipeline (decode + eval transform +
    forward of the same JPEG bytes) at the same batch sizes; single-image latency for each;
(b) ``dogbreed-serve`` on 127.0.0.1 with its default settings (plus ``--env``), driven by a Python
    thread pool of keep-alive ``http.client`` connections posting those JPEG files: throughput and
    p50/p99 latency at concurrency 1, 4, 8 and 16;

alternating (a) and (b) for ``--rounds`` rounds and keeping the best of each side, so that load
from other processes on a shared machine skews neither.

It prints the ratios against the goals: throughput at concurrency 8 >= 0.85 x the best in-process
pipeline throughput, and p50 latency at concurrency 1 <= 1.2 x the in-process single-image
pipeline latency. The load generator runs on the same cores as the server, as it would in a
sidecar; its cost is part of the HTTP figures.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from dogbreed.artifact import ModelSpec, load_artifact, save_artifact
from dogbreed.model import build_model
from dogbreed.presets import IMAGENET_MEAN, IMAGENET_STD, eval_transform, to_rgb
from dogbreed.serve.config import available_cpus

BATCH_SIZES = (1, 4, 8, 16, 32)
CONCURRENCY = (1, 4, 8, 16)
GOAL_THROUGHPUT_RATIO = 0.85
GOAL_LATENCY_RATIO = 1.2


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


def make_artifact(model_dir: Path, num_classes: int, image_size: int) -> None:
    torch.manual_seed(0)
    names = [f"{i + 1:03d}.Breed_{i + 1}" for i in range(num_classes)]
    spec = ModelSpec(names, image_size, list(IMAGENET_MEAN), list(IMAGENET_STD))
    save_artifact(model_dir, build_model(num_classes), spec)


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


def in_process_limits(model_dir: Path, jpegs: list[bytes], seconds: float) -> dict[str, float]:
    """Best img/s and single-image latency of the model alone and of the whole pipeline."""
    torch.set_num_threads(available_cpus())
    model, spec = load_artifact(model_dir)
    model = model.to(memory_format=torch.channels_last)
    transform = eval_transform(spec.image_size, spec.mean, spec.std)

    def preprocess(data: bytes) -> torch.Tensor:
        return transform(to_rgb(Image.open(io.BytesIO(data))))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = batch.contiguous(memory_format=torch.channels_last)
            return torch.softmax(model(x), dim=1)

    tensors = [preprocess(data) for data in jpegs]
    results: dict[str, float] = {}
    print(f"\n(a) in-process, {torch.get_num_threads()} torch threads")
    print(f"{'batch':>5} {'model img/s':>12} {'pipeline img/s':>15}")
    for batch_size in BATCH_SIZES:
        starts = range(0, len(jpegs) - batch_size + 1, batch_size)  # whole batches only
        byte_batches = [jpegs[i : i + batch_size] for i in starts]
        batches = [torch.stack(tensors[i : i + batch_size]) for i in starts]
        forward(batches[0])  # warm-up at this shape
        images = len(batches) * batch_size
        model_rate = throughput(lambda b=batches: [forward(x) for x in b], images, seconds)
        pipeline_rate = throughput(
            lambda c=byte_batches: [forward(torch.stack([preprocess(d) for d in x])) for x in c],
            images,
            seconds,
        )
        print(f"{batch_size:>5} {model_rate:>12.1f} {pipeline_rate:>15.1f}")
        results[f"model_bs{batch_size}"] = model_rate
        results[f"pipeline_bs{batch_size}"] = pipeline_rate
    results["model_best"] = max(results[f"model_bs{b}"] for b in BATCH_SIZES)
    results["pipeline_best"] = max(results[f"pipeline_bs{b}"] for b in BATCH_SIZES)
    one = tensors[0].unsqueeze(0)
    results["model_latency_ms"] = 1000 * statistics.median(timed(lambda: forward(one), 50))
    results["pipeline_latency_ms"] = 1000 * statistics.median(
        timed(lambda: forward(preprocess(jpegs[0]).unsqueeze(0)), 50)
    )
    print(
        f"single image: model {results['model_latency_ms']:.1f} ms, "
        f"pipeline {results['pipeline_latency_ms']:.1f} ms (median of 50)"
    )
    return results


class ServerUnderTest:
    def __init__(self, model_dir: Path, port: int, env: dict[str, str], log_path: Path) -> None:
        serve = Path(sys.executable).with_name("dogbreed-serve")
        full_env = {
            **os.environ,
            "DOGBREED_BIND_HOST": "127.0.0.1",
            "SAGEMAKER_BIND_TO_PORT": str(port),
            **env,
        }
        self.port = port
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(serve), "--model-dir", str(model_dir)], env=full_env, stdout=log, stderr=log
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


def serve_over_http(
    model_dir: Path, jpegs: list[bytes], args: argparse.Namespace, env: dict[str, str]
) -> dict[int, dict[str, float]]:
    log_path = model_dir.parent / "server.log"
    server = ServerUnderTest(model_dir, args.port, env, log_path)
    try:
        server.wait_ready()
        load_test(args.port, jpegs, 4, 2.0)  # warm the connection pools and allocator
        print(f"\n(b) dogbreed-serve over HTTP (env: {env or 'defaults'})")
        print(f"{'conc.':>5} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
        results = {}
        for concurrency in CONCURRENCY:
            r = load_test(args.port, jpegs, concurrency, args.seconds)
            results[concurrency] = r
            print(
                f"{concurrency:>5} {r['rate']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                f"{r['requests']:>9}"
            )
    finally:
        server.stop()
    print("\n".join(line for line in log_path.read_text().splitlines() if " ready" in line))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="distinct JPEG files (default 64)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement (default 8)")
    parser.add_argument("--port", type=int, default=18931)
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="server environment"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="in-process + HTTP rounds; best of each (default 2)"
    )
    parser.add_argument(
        "--http-only", action="store_true", help="skip the in-process limits (compare layouts)"
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model_dir = Path(tmp) / "model"
        make_artifact(model_dir, args.classes, args.image_size)
        jpegs = make_jpegs(args.images)
        print(
            f"{len(jpegs)} JPEGs, mean {statistics.mean(map(len, jpegs)) / 1024:.0f} KiB; "
            f"ResNet18 {args.classes} classes at {args.image_size}px; {available_cpus()} CPUs; "
            f"torch {torch.__version__}"
        )
        if args.http_only:
            serve_over_http(model_dir, jpegs, args, env)
            return 0
        in_process_runs, http_runs = [], []
        for round_ in range(1, args.rounds + 1):
            print(f"\n===== round {round_} of {args.rounds}")
            in_process_runs.append(in_process_limits(model_dir, jpegs, args.seconds / 4))
            http_runs.append(serve_over_http(model_dir, jpegs, args, env))
    # On a shared machine each side keeps its best round: the limits their best figures, the
    # server, per concurrency, its best-throughput round.
    limits = {
        key: (min if key.endswith("_ms") else max)(run[key] for run in in_process_runs)
        for key in in_process_runs[0]
    }
    http_results = {
        c: max((run[c] for run in http_runs), key=lambda r: r["rate"]) for c in CONCURRENCY
    }
    print("\nbest of the rounds")
    print(
        f"  in-process: model {limits['model_best']:.1f} img/s (best batch), "
        f"{limits['model_latency_ms']:.1f} ms single image; pipeline "
        f"{limits['pipeline_best']:.1f} img/s (best batch), "
        f"{limits['pipeline_latency_ms']:.1f} ms single image"
    )
    for c, r in http_results.items():
        print(
            f"  HTTP c={c:<2} {r['rate']:6.1f} img/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms"
        )

    throughput_ratio = http_results[8]["rate"] / limits["pipeline_best"]
    latency_ratio = http_results[1]["p50_ms"] / limits["pipeline_latency_ms"]
    print("\nratios")
    print(
        f"  HTTP c=8 {http_results[8]['rate']:.1f} img/s / in-process pipeline best "
        f"{limits['pipeline_best']:.1f} img/s = {throughput_ratio:.2f} "
        f"(goal >= {GOAL_THROUGHPUT_RATIO}) {'OK' if throughput_ratio >= GOAL_THROUGHPUT_RATIO else 'MISSED'}"
    )
    print(
        f"  HTTP c=1 p50 {http_results[1]['p50_ms']:.1f} ms / in-process single image "
        f"{limits['pipeline_latency_ms']:.1f} ms = {latency_ratio:.2f} "
        f"(goal <= {GOAL_LATENCY_RATIO}) {'OK' if latency_ratio <= GOAL_LATENCY_RATIO else 'MISSED'}"
    )
    print(
        f"  in-process pipeline best / model best = "
        f"{limits['pipeline_best'] / limits['model_best']:.2f}; "
        f"HTTP c=16 / model best = {http_results[16]['rate'] / limits['model_best']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
