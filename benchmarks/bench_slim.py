"""Slim serving benchmark: the torch server, the slim server (ONNX Runtime, fp32 and int8) and each
slim runtime's in-process pipeline, on the same JPEGs, in one run.

Run (from the repository root, on a quiet machine; about 6 minutes on 2 cores; needs `make venv`,
which builds .venv-slim and build/onnx-site)::

    .venv/bin/python benchmarks/bench_slim.py

It builds a ResNet18 artifact (133 classes, 224 px, seeded random weights: speed does not depend
on them), adds model.onnx and model.int8.onnx with the training job's exporter (calibrated on the
benchmark's own JPEGs), and starts three servers on 127.0.0.1 with default settings: the torch one
(.venv, DOGBREED_RUNTIME=torch) and the slim one twice (.venv-slim, no torch;
DOGBREED_PRECISION=fp32 and int8). Then, in ``--pairs`` rounds, each measured within seconds of
the others so that a shared machine's drifting load stays out of the ratios:

- HTTP throughput at concurrency 8 of all three servers (keep-alive clients posting the JPEGs);
- each slim runtime's in-process pipeline limit, in the slim venv with every core: decode +
  preprocess (dogbreed.imaging, as the server does) + forward, best of batch 1, 4 and 8;
- p50 latency at concurrency 1 of the torch server and the int8 server.

The goals are ratios of those, judged on their median over the rounds. Beside them, per round:

- the torch model alone at batch 8 (.venv, every core), so that each model-alone ratio (int8 model
  over torch model) is printed as the ceiling its HTTP ratio cannot pass: decoding and HTTP add
  the same milliseconds to both servers;
- each server's CPU time per request (its processes' user + system time over the requests of the
  c=8 load), split into decode + preprocess, the model, and the rest (HTTP, Flask, batching).

The header names the CPU and whether it has VNNI, the int8 dot-product instructions that ONNX
Runtime's int8 kernels are fastest with (AVX2-only CPUs run them at about half the gain).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_support import ServerUnderTest, load_test, make_jpegs, throughput, timed, verdict

from dogbreed.artifact import ONNX_FP32_FILE, ONNX_INT8_FILE
from dogbreed.serve.config import available_cpus

REPO = Path(__file__).resolve().parents[1]
#: The slim venv's python (DOGBREED_SLIM_PYTHON: any python with onnxruntime, Flask and gunicorn,
#: such as a GPU machine's single environment) and the export's ONNX site (DOGBREED_ONNX_SITE).
SLIM_PYTHON = Path(os.environ.get("DOGBREED_SLIM_PYTHON") or REPO / ".venv-slim" / "bin" / "python")
ONNX_SITE = Path(os.environ.get("DOGBREED_ONNX_SITE") or REPO / "build" / "onnx-site")
PRECISIONS = ("fp32", "int8")
MODEL_FILES = {"fp32": ONNX_FP32_FILE, "int8": ONNX_INT8_FILE}
BATCH_SIZES = (1, 4, 8)
GOAL_INT8_THROUGHPUT = 2.5  # int8 server img/s at c=8 over the torch server's
GOAL_FP32_THROUGHPUT = 1.5
GOAL_OWN_PIPELINE = 0.85  # each slim server at c=8 over its in-process pipeline
GOAL_INT8_P50 = 0.5  # int8 server p50 at c=1 over the torch server's


def cpu_description() -> str:
    """The CPU's model name and its int8 dot-product instructions (VNNI), from /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first CPU's
    name = fields.get("model name", "unknown CPU")
    flags = set(fields.get("flags", "").split())
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    return f"{name}, {'VNNI: ' + ' '.join(vnni) if vnni else 'no VNNI (AVX2-class int8)'}"


def torch_model_rate(model_dir: Path, jpeg_dir: Path, seconds: float) -> float:
    """The torch model alone at batch 8, every core, in a process of its own (.venv)."""
    script = [sys.executable, __file__, "--torch-model", str(model_dir), "--jpegs", str(jpeg_dir)]
    result = subprocess.run(
        [*script, "--seconds", str(seconds)], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"torch model alone failed:\n{result.stderr}")
    return float(result.stdout.splitlines()[-1])


def measure_torch_model(model_dir: Path, jpeg_dir: Path, seconds: float) -> float:
    from bench_serve import InProcess

    jpegs = [path.read_bytes() for path in sorted(jpeg_dir.glob("*.jpg"))]
    return InProcess(model_dir, jpegs).model_rate(8, seconds)


def served_with_cpu(server: ServerUnderTest, jpegs: list[bytes], seconds: float) -> dict:
    """A c=8 load and the server's CPU milliseconds per request (master and workers)."""
    import psutil  # the .venv's; this file also runs in the slim venv (--in-process), without it

    processes = [psutil.Process(server.process.pid)]
    processes += processes[0].children(recursive=True)

    def cpu_s() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in processes)

    before = cpu_s()
    served = load_test(server.port, jpegs, 8, seconds)
    served["cpu_ms"] = 1000 * (cpu_s() - before) / served["requests"]
    return served


def in_process(model_dir: Path, precision: str, jpeg_dir: Path, seconds: float) -> dict:
    """One slim runtime's in-process figures, measured in the slim venv (see ``measure_in_process``)."""
    script = [str(SLIM_PYTHON), __file__, "--in-process", str(model_dir / MODEL_FILES[precision])]
    result = subprocess.run(
        [*script, "--jpegs", str(jpeg_dir), "--seconds", str(seconds)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"in-process {precision} failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def measure_in_process(model_file: Path, jpeg_dir: Path, seconds: float) -> dict:
    """In the slim venv: decode + preprocess + forward of the JPEGs, with every core."""
    import io

    import numpy as np
    from PIL import Image

    from dogbreed.artifact import load_spec
    from dogbreed.imaging import decode_rgb, eval_array, eval_resize_size
    from dogbreed.serve.onnx_runtime import OnnxRuntime

    spec = load_spec(model_file.parent)
    runtime = OnnxRuntime(model_file, available_cpus(), model_file.name)
    jpegs = [path.read_bytes() for path in sorted(jpeg_dir.glob("*.jpg"))]
    resize_to = eval_resize_size(spec.image_size)

    def preprocess(data: bytes) -> np.ndarray:
        image = decode_rgb(Image.open(io.BytesIO(data)), resize_to)
        return eval_array(image, spec.image_size, spec.mean, spec.std)

    arrays = [preprocess(data) for data in jpegs]
    pipeline, model = {}, {}
    for batch in BATCH_SIZES:
        chunks = [jpegs[i : i + batch] for i in range(0, len(jpegs) - batch + 1, batch)]
        stacked = [
            np.stack(arrays[i : i + batch]) for i in range(0, len(arrays) - batch + 1, batch)
        ]
        runtime.forward(stacked[0])  # warm-up at this shape
        model[batch] = throughput(
            lambda s=stacked: [runtime.forward(x) for x in s], len(stacked) * batch, seconds / 6
        )
        pipeline[batch] = throughput(
            lambda c=chunks: [runtime.forward(np.stack([preprocess(d) for d in x])) for x in c],
            len(chunks) * batch,
            seconds / 3,
        )
    best = max(pipeline, key=pipeline.__getitem__)
    one = arrays[0][None]
    return {
        "pipeline_rate": pipeline[best],
        "best_batch": best,
        "model_rate_at_8": model[8],
        "preprocess_ms": 1000 * statistics.median(timed(lambda: preprocess(jpegs[0]), 30)),
        "single_ms": 1000
        * statistics.median(timed(lambda: runtime.forward(preprocess(jpegs[0])[None]), 30)),
        "model_single_ms": 1000 * statistics.median(timed(lambda: runtime.forward(one), 30)),
    }


def build_model_dir(root: Path, jpegs: list[bytes], classes: int) -> Path:
    """The artifact (torch) plus its ONNX files from the training job's exporter."""
    from bench_serve import make_artifact

    model_dir = root / "model"
    make_artifact(model_dir, classes, 224)
    data = root / "data"
    for split, count in (("train", 2), ("valid", 1)):
        for c in range(classes):
            folder = data / split / f"{c + 1:03d}.Breed_{c + 1}"
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.jpg").write_bytes(jpegs[(c * 3 + i) % len(jpegs)])
    env = {**os.environ, "DOGBREED_ONNX_SITE": str(ONNX_SITE)}
    command = [sys.executable, "-m", "dogbreed.export", str(model_dir), "--int8-max-drop", "100"]
    command += ["--train", str(data / "train"), "--valid", str(data / "valid")]
    subprocess.run(command, env=env, check=True, timeout=1200, capture_output=True)
    shutil.rmtree(data)
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="distinct JPEG files (default 64)")
    parser.add_argument("--classes", type=int, default=133)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement (default 8)")
    parser.add_argument("--pairs", type=int, default=5, help="rounds of measurements (default 5)")
    parser.add_argument("--port", type=int, default=18941, help="first of three ports")
    parser.add_argument("--in-process", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--torch-model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--jpegs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        print(json.dumps(measure_in_process(args.in_process, args.jpegs, args.seconds)))
        return 0
    if args.torch_model:
        print(measure_torch_model(args.torch_model, args.jpegs, args.seconds))
        return 0
    for needed in (SLIM_PYTHON, ONNX_SITE):
        if not needed.exists():
            sys.exit(f"{needed} is missing: run `make venv`")

    with tempfile.TemporaryDirectory(prefix="bench-slim-") as tmp:
        root = Path(tmp)
        jpegs = make_jpegs(args.images)
        jpeg_dir = root / "jpegs"
        jpeg_dir.mkdir()
        for i, data in enumerate(jpegs):
            (jpeg_dir / f"{i:03d}.jpg").write_bytes(data)
        started = time.perf_counter()
        model_dir = build_model_dir(root, jpegs, args.classes)
        print(
            f"{len(jpegs)} JPEGs, mean {statistics.mean(map(len, jpegs)) / 1024:.0f} KiB; ResNet18 "
            f"{args.classes} classes at 224 px, exported in {time.perf_counter() - started:.0f} s; "
            f"{available_cpus()} CPUs: {cpu_description()}"
        )
        layouts = {
            "torch": (
                Path(sys.executable).with_name("dogbreed-serve"),
                {"DOGBREED_RUNTIME": "torch"},
            ),
            "fp32": (SLIM_PYTHON.with_name("dogbreed-serve"), {"DOGBREED_PRECISION": "fp32"}),
            "int8": (SLIM_PYTHON.with_name("dogbreed-serve"), {"DOGBREED_PRECISION": "int8"}),
        }
        servers = {
            name: ServerUnderTest(model_dir, args.port + i, env, root / f"{name}.log", serve)
            for i, (name, (serve, env)) in enumerate(layouts.items())
        }
        ports = {name: args.port + i for i, name in enumerate(layouts)}
        rows: list[dict] = []
        try:
            for server in servers.values():
                server.wait_ready()
            for port in ports.values():
                load_test(port, jpegs, 4, 2.0)  # warm connection pools and allocators
            print(
                f"\n{'round':>5} | {'HTTP c=8 img/s':^23} | {'in-process img/s':^17} | "
                f"{'c=1 p50 ms':^15}\n{'':>5} | {'torch':>7} {'fp32':>7} {'int8':>7} | "
                f"{'fp32':>8} {'int8':>8} | {'torch':>7} {'int8':>7}"
            )
            for round_ in range(1, args.pairs + 1):
                row: dict = {"c8": {}, "limit": {}, "p50": {}, "detail": {}, "cpu_ms": {}}
                row["torch_model_rate"] = torch_model_rate(model_dir, jpeg_dir, args.seconds / 4)
                for name in ("torch", *PRECISIONS):
                    if name in PRECISIONS:
                        detail = in_process(model_dir, name, jpeg_dir, args.seconds)
                        row["detail"][name] = detail
                        row["limit"][name] = detail["pipeline_rate"]
                    served = served_with_cpu(servers[name], jpegs, args.seconds)
                    row["c8"][name], row["cpu_ms"][name] = served["rate"], served["cpu_ms"]
                for name in ("torch", "int8"):
                    row["p50"][name] = load_test(ports[name], jpegs, 1, args.seconds / 2)["p50_ms"]
                rows.append(row)
                c8, limit, p50 = row["c8"], row["limit"], row["p50"]
                print(
                    f"{round_:>5} | {c8['torch']:>7.1f} {c8['fp32']:>7.1f} {c8['int8']:>7.1f} | "
                    f"{limit['fp32']:>8.1f} {limit['int8']:>8.1f} | {p50['torch']:>7.1f} "
                    f"{p50['int8']:>7.1f}"
                )
        finally:
            for server in servers.values():
                server.stop()
            for name, server in servers.items():
                ready = [
                    line for line in server.log_path.read_text().splitlines() if "ready:" in line
                ]
                print(f"{name}: {ready[-1] if ready else server.log_path.read_text()[-2000:]}")

    def ratios(top, bottom) -> list[float]:
        return [top(r) / bottom(r) for r in rows]

    cpus = available_cpus()  # what the servers use: the affinity mask and cgroup quota
    print(
        "\nwhere one image's time goes (medians over the rounds; the servers batch up to 8; "
        f"core-ms: a model's wall time x {cpus} cores, its thread pool busy or spinning)"
    )
    torch_model = statistics.median(1000 / r["torch_model_rate"] for r in rows)
    print(
        f"  torch: model {torch_model:.1f} ms/img at batch 8 ({cpus * torch_model:.1f} core-ms); "
        f"server {statistics.median(r['cpu_ms']['torch'] for r in rows):.1f} core-ms/request"
    )
    for precision in PRECISIONS:
        details = [r["detail"][precision] for r in rows]
        pre = statistics.median(d["preprocess_ms"] for d in details)
        model = statistics.median(1000 / d["model_rate_at_8"] for d in details)
        served = statistics.median(1000 / r["c8"][precision] for r in rows)
        cpu_ms = statistics.median(r["cpu_ms"][precision] for r in rows)
        print(
            f"  {precision}: decode + preprocess {pre:.1f} ms (one core), model {model:.1f} ms/img at "
            f"batch 8 ({cpus * model:.1f} core-ms), server at c=8 {served:.1f} ms/img and "
            f"{cpu_ms:.1f} core-ms/request, of which HTTP, Flask and batching "
            f"{cpu_ms - pre - cpus * model:.1f}; single image in process "
            f"{statistics.median(d['single_ms'] for d in details):.1f} ms (model alone "
            f"{statistics.median(d['model_single_ms'] for d in details):.1f} ms)"
        )
    print("\nceilings: each model alone over the torch model alone at batch 8 (medians)")
    for precision in PRECISIONS:
        ceiling = ratios(lambda r, p=precision: r["detail"][p]["model_rate_at_8"],
                         lambda r: r["torch_model_rate"])  # fmt: skip
        print(f"  {precision} model / torch model: {statistics.median(ceiling):.2f}")
    print("\ngoals (median of the rounds)")
    checks = [
        (
            "int8 / torch, HTTP c=8 img/s",
            ratios(lambda r: r["c8"]["int8"], lambda r: r["c8"]["torch"]),
            GOAL_INT8_THROUGHPUT,
            True,
        ),
        (
            "fp32 / torch, HTTP c=8 img/s",
            ratios(lambda r: r["c8"]["fp32"], lambda r: r["c8"]["torch"]),
            GOAL_FP32_THROUGHPUT,
            True,
        ),
        (
            "int8 server / its in-process pipeline",
            ratios(lambda r: r["c8"]["int8"], lambda r: r["limit"]["int8"]),
            GOAL_OWN_PIPELINE,
            True,
        ),
        (
            "fp32 server / its in-process pipeline",
            ratios(lambda r: r["c8"]["fp32"], lambda r: r["limit"]["fp32"]),
            GOAL_OWN_PIPELINE,
            True,
        ),
        (
            "int8 / torch, c=1 p50",
            ratios(lambda r: r["p50"]["int8"], lambda r: r["p50"]["torch"]),
            GOAL_INT8_P50,
            False,
        ),
    ]
    for name, values, goal, at_least in checks:
        print(verdict(name, values, goal, at_least))
    return 0


if __name__ == "__main__":
    sys.exit(main())
