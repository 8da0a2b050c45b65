"""Serving benchmark: the server over HTTP against in-process limits measured in the same run.

Run (from the repository root, on a quiet machine; about 4 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_serve.py
    .venv/bin/python benchmarks/bench_serve.py --env MODEL_SERVER_WORKERS=2   # another layout

It builds a ResNet18 artifact (133 classes, image size 224, seeded random weights: speed does not
depend on the weights), writes ``--images`` JPEG files of about 300x300 pixels (gradients, shapes
and noise, so decoding costs what a photo costs), starts ``dogbreed-serve`` on 127.0.0.1 with its
default settings (plus ``--env``) and then measures

(a) in-process, with every core: the model alone on preprocessed batches (channels_last,
    inference_mode) at several batch sizes, and the whole pipeline (decode + eval transform +
    forward of the same JPEG bytes) at the same batch sizes; single-image latency for each;
(b) the server, driven by a Python thread pool of keep-alive ``http.client`` connections posting
    those JPEG files: throughput and p50/p99 latency at concurrency 1, 4, 8 and 16;
(c) the goals, in ``--pairs`` back-to-back pairs: the in-process pipeline at its three best batch
    sizes from (a) (the fastest counts) beside the server at concurrency 8, and the in-process
    single-image pipeline latency beside the server's p50 at concurrency 1. Each pair yields a
    ratio; the verdict is on their median. Measuring both sides of a ratio within seconds of each
    other keeps a shared machine's drifting load out of it (a best-of over long separate phases
    favours whichever side was measured more often).

The load generator runs on the same cores as the server, as it would in a sidecar; its cost is
part of the HTTP figures.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image
from serve_support import ServerUnderTest, load_test, make_jpegs, throughput, timed, verdict

from dogbreed.artifact import ModelSpec, load_artifact, save_artifact
from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD, decode_rgb, eval_resize_size
from dogbreed.model import build_model
from dogbreed.serve.allocator import allocator_in_use, env_with_allocator
from dogbreed.serve.config import available_cpus
from dogbreed.train.presets import eval_transform

BATCH_SIZES = (1, 4, 8, 16, 32)
CONCURRENCY = (1, 4, 8, 16)
GOAL_THROUGHPUT_RATIO = 0.85
GOAL_LATENCY_RATIO = 1.2


def make_artifact(model_dir: Path, num_classes: int, image_size: int) -> None:
    """Seeded random weights; labels as a job trained on folders 001.Breed_1 ... writes them."""
    torch.manual_seed(0)
    names = [f"Breed_{i + 1}" for i in range(num_classes)]
    spec = ModelSpec(names, image_size, list(IMAGENET_MEAN), list(IMAGENET_STD))
    save_artifact(model_dir, build_model(num_classes), spec)


class InProcess:
    """The model and its eval pipeline in this process, with every core: the limits to compare to."""

    def __init__(self, model_dir: Path, jpegs: list[bytes]) -> None:
        torch.set_num_threads(available_cpus())
        model, spec = load_artifact(model_dir)
        self.model = model.to(memory_format=torch.channels_last)
        self.transform = eval_transform(spec.image_size, spec.mean, spec.std)
        self.decode_size = eval_resize_size(spec.image_size)
        self.jpegs = jpegs
        self.tensors = [self.preprocess(data) for data in jpegs]

    def preprocess(self, data: bytes) -> torch.Tensor:
        """Decode and transform as the training job's evaluation does."""
        return self.transform(decode_rgb(Image.open(io.BytesIO(data)), self.decode_size))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = batch.contiguous(memory_format=torch.channels_last)
            return torch.softmax(self.model(x), dim=1)

    def _starts(self, batch_size: int) -> range:
        return range(0, len(self.jpegs) - batch_size + 1, batch_size)  # whole batches only

    def model_rate(self, batch_size: int, seconds: float) -> float:
        batches = [torch.stack(self.tensors[i : i + batch_size]) for i in self._starts(batch_size)]
        self.forward(batches[0])  # warm-up at this shape
        return throughput(
            lambda: [self.forward(x) for x in batches], len(batches) * batch_size, seconds
        )

    def pipeline_rate(self, batch_size: int, seconds: float) -> float:
        chunks = [self.jpegs[i : i + batch_size] for i in self._starts(batch_size)]
        return throughput(
            lambda: [self.forward(torch.stack([self.preprocess(d) for d in c])) for c in chunks],
            len(chunks) * batch_size,
            seconds,
        )

    def model_latency_ms(self, repeats: int = 50) -> float:
        one = self.tensors[0].unsqueeze(0)
        return 1000 * statistics.median(timed(lambda: self.forward(one), repeats))

    def pipeline_latency_ms(self, repeats: int = 50) -> float:
        data = self.jpegs[0]
        return 1000 * statistics.median(
            timed(lambda: self.forward(self.preprocess(data).unsqueeze(0)), repeats)
        )

    def sweep(self, seconds: float) -> dict[int, float]:
        """Print model and pipeline img/s per batch size and single-image latency; pipeline rates."""
        print(f"\n(a) in-process, {torch.get_num_threads()} torch threads")
        print(f"{'batch':>5} {'model img/s':>12} {'pipeline img/s':>15}")
        pipeline = {}
        for batch_size in BATCH_SIZES:
            model_rate = self.model_rate(batch_size, seconds)
            pipeline[batch_size] = self.pipeline_rate(batch_size, seconds)
            print(f"{batch_size:>5} {model_rate:>12.1f} {pipeline[batch_size]:>15.1f}")
        print(
            f"single image: model {self.model_latency_ms():.1f} ms, "
            f"pipeline {self.pipeline_latency_ms():.1f} ms (median of 50)"
        )
        return pipeline


def http_sweep(port: int, jpegs: list[bytes], seconds: float) -> None:
    """Print the server's img/s and p50/p99 latency at each concurrency."""
    print("\n(b) dogbreed-serve over HTTP")
    print(f"{'conc.':>5} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
    for concurrency in CONCURRENCY:
        r = load_test(port, jpegs, concurrency, seconds)
        print(
            f"{concurrency:>5} {r['rate']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['requests']:>9}"
        )


def paired_goals(
    in_process: InProcess,
    port: int,
    jpegs: list[bytes],
    batch_sizes: list[int],
    args: argparse.Namespace,
) -> tuple[list[float], list[float]]:
    """Throughput and latency ratios, each from an in-process and an HTTP figure taken together."""
    print(
        f"\n(c) {args.pairs} pairs: in-process pipeline (batch {' or '.join(map(str, batch_sizes))})"
        " vs HTTP c=8; in-process single image vs HTTP c=1 p50"
    )
    print(
        f"{'pair':>4} {'pipeline':>9} {'HTTP c=8':>9} {'ratio':>6}   {'single':>7} {'c=1 p50':>8} {'ratio':>6}"
    )
    throughput_ratios, latency_ratios = [], []
    for pair in range(1, args.pairs + 1):
        limit = max(in_process.pipeline_rate(b, args.seconds / 2) for b in batch_sizes)
        served = load_test(port, jpegs, 8, args.seconds)["rate"]
        single_ms = in_process.pipeline_latency_ms()
        p50_ms = load_test(port, jpegs, 1, args.seconds / 2)["p50_ms"]
        throughput_ratios.append(served / limit)
        latency_ratios.append(p50_ms / single_ms)
        print(
            f"{pair:>4} {limit:>9.1f} {served:>9.1f} {served / limit:>6.2f}   "
            f"{single_ms:>5.1f}ms {p50_ms:>6.1f}ms {p50_ms / single_ms:>6.2f}"
        )
    return throughput_ratios, latency_ratios


def same_allocator_as_the_server(argv: list[str]) -> None:
    """Re-execute this benchmark with the allocator the server preloads, so that the in-process
    limits are not measured on glibc's malloc (history-dependent page faults) against a server on
    tcmalloc."""
    env = env_with_allocator(os.environ)
    if env is not None:
        os.execve(sys.executable, [sys.executable, __file__, *argv], env)


def main(argv: list[str] | None = None) -> int:
    same_allocator_as_the_server(sys.argv[1:] if argv is None else argv)
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
        "--pairs", type=int, default=5, help="back-to-back measurements per goal (default 5)"
    )
    parser.add_argument(
        "--http-only", action="store_true", help="only the HTTP sweep (b): compare server layouts"
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
            f"torch {torch.__version__}; server env: {env or 'defaults'}; "
            f"this process's allocator: {allocator_in_use()}"
        )
        serve = Path(sys.executable).with_name("dogbreed-serve")
        server = ServerUnderTest(model_dir, args.port, env, Path(tmp) / "server.log", serve)
        try:
            server.wait_ready()
            load_test(args.port, jpegs, 4, 2.0)  # warm the connection pools and allocator
            if args.http_only:
                http_sweep(args.port, jpegs, args.seconds)
                return 0
            in_process = InProcess(model_dir, jpegs)
            pipeline = in_process.sweep(args.seconds / 4)
            http_sweep(args.port, jpegs, args.seconds)
            best = sorted(pipeline, key=pipeline.__getitem__, reverse=True)[:3]
            throughput_ratios, latency_ratios = paired_goals(
                in_process, args.port, jpegs, best, args
            )
        finally:
            server.stop()
            ready = [line for line in server.log_path.read_text().splitlines() if " ready" in line]
            print("\n".join(ready))
    print("\ngoals (median of the pairs)")
    print(
        verdict(
            "HTTP c=8 img/s / in-process pipeline img/s",
            throughput_ratios,
            GOAL_THROUGHPUT_RATIO,
            True,
        )
    )
    print(
        verdict(
            "HTTP c=1 p50 / in-process single-image latency",
            latency_ratios,
            GOAL_LATENCY_RATIO,
            False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
