"""GPU check: training, the torchrun path and the server on one GPU, each beside a limit measured
in the same run; the figures go to a JSON file.

    .venv/bin/python benchmarks/gpu_check.py          # one GPU: at most 7.5 minutes
    .venv/bin/python benchmarks/gpu_check.py --dry    # the same code on the CPU, tiny sizes

Figures, each with its absolute numbers and a ratio:

- ``train``: the trainer's step (:func:`dogbreed.train.engine.train_one_epoch`, AMP in bf16 where the
  GPU supports it, else fp16 with the gradient scaler; channels_last) fed JPEG files through
  :class:`dogbreed.train.loader.BatchLoader` with the plan :func:`dogbreed.train.job.transit_plan` makes,
  over the same step on tensors already on the device (bench_train's StepTimer);
- ``torchrun``: a small real job, ``python -m dogbreed.train.ranks --nproc-per-node=1 --standalone
  -m dogbreed.train`` on a generated /opt/ml tree: exit code, seconds, and the images/s its
  metric lines logged, over the compute-only figure;
- ``serve``: ``dogbreed-serve`` on 127.0.0.1 with a generated artifact, driven by bench_serve's
  keep-alive client threads at concurrency 1, 8 and 32, each over bench_serve's in-process
  pipeline (decode + eval transform + forward, on the same device) at the batch size the server
  could form, measured just before it.

A section that fails records its error and the run exits 1; the run stops at ``--budget-s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from bench_serve import InProcess, ServerUnderTest, load_test, make_artifact, make_jpegs
from bench_train import StepTimer, photo_like_jpegs
from serve_support import free_port

from dogbreed.hyperparams import Hyperparameters
from dogbreed.metrics import METRIC_NAMES, parse_metric_line
from dogbreed.model import build_model
from dogbreed.serve.allocator import allocator_in_use
from dogbreed.serve.config import ServerSettings, available_cpus, cpu_batch_size
from dogbreed.train.dataset import ImageDataset
from dogbreed.train.distributed import World
from dogbreed.train.job import transit_plan
from dogbreed.train.loader import BatchLoader
from dogbreed.train.presets import train_crop
from dogbreed.train.sample_data import write_sample
from dogbreed.train.sampling import EpochBatchSampler

CLASSES = 133
CONCURRENCY = (1, 8, 32)
#: Dry runs' children: no GPU; one torch thread per process (OpenMP teams on shared cores stall).
DRY_ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "DOGBREED_TORCH_THREADS": "1"}
JOB_RATE = METRIC_NAMES["images_per_sec"]
Figures = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How much each section measures."""

    image_size: int
    batch_size: int
    steps: int  # timed training steps per measurement
    rounds: int  # compute-only / full-pipeline pairs; medians are reported
    train_jpegs: int  # distinct JPEG files behind the full pipeline (re-read to fill the steps)
    job_per_class: int  # training images per class in the torchrun job (4 classes)
    job_epochs: int
    serve_jpegs: int
    serve_seconds: float  # per HTTP load; the in-process limit beside it gets half
    timeout_s: float  # the torchrun job, and the server's start


GPU = Sizes(224, 64, 40, 3, 256, 256, 2, 64, 8.0, 240.0)
DRY = Sizes(32, 4, 2, 1, 8, 4, 1, 16, 0.5, 120.0)


class DeviceInProcess(InProcess):
    """bench_serve's in-process pipeline with the model on ``device``; outputs come back to the
    host, as the server's do."""

    def __init__(self, model_dir: Path, jpegs: list[bytes], device: torch.device) -> None:
        threads = torch.get_num_threads()
        super().__init__(model_dir, jpegs)
        torch.set_num_threads(threads)  # this run's count (InProcess takes every core)
        self.device = device
        self.model = self.model.to(device)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return super().forward(batch.to(self.device, non_blocking=True)).cpu()


def device_info(device: torch.device) -> Figures:
    """What ran the figures: device name, torch, CUDA and cuDNN versions, host cores."""
    info = {
        "type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cpus": available_cpus(),
    }
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def train_figures(sizes: Sizes, device: torch.device, workdir: Path) -> Figures:
    """Full-pipeline img/s over compute-only img/s, medians over ``sizes.rounds`` pairs."""
    hp = Hyperparameters(batch_size=sizes.batch_size, image_size=sizes.image_size)
    torch.manual_seed(0)
    model = build_model(CLASSES).to(device, memory_format=torch.channels_last)
    timer = StepTimer(model, device)
    images = torch.randn(hp.batch_size, 3, hp.image_size, hp.image_size, device=device)
    labels = torch.randint(0, CLASSES, (hp.batch_size,), device=device)
    in_memory = iter(lambda: (images, labels), None)

    (workdir / "train").mkdir()
    paths = photo_like_jpegs(workdir / "train", sizes.train_jpegs)
    count = hp.batch_size * (sizes.steps + 1)  # one untimed warm-up step, then the timed ones
    samples = [(paths[i % len(paths)], i % CLASSES) for i in range(count)]
    dataset = ImageDataset(samples, train_crop(hp.image_size), hp.image_size, seed=0)
    sampler = EpochBatchSampler(len(dataset), hp.batch_size, seed=0)
    plan = transit_plan(hp, World(device=device))
    rounds = []
    for n in range(sizes.rounds):  # alternated, so that drifting load hits both alike
        compute = timer.images_per_second(in_memory, sizes.steps)
        sampler.set_epoch(n)
        pin = device.type == "cuda"  # as the trainer does
        loader = BatchLoader(dataset, sampler, plan, hp.stall_timeout, pin_memory=pin)
        rounds.append(
            {
                "compute_img_s": compute,
                "pipeline_img_s": timer.images_per_second(loader, sizes.steps),
            }
        )
    return {
        "precision": str(timer.precision.dtype) if timer.precision.enabled else "float32",
        "grad_scaler": timer.precision.scaler.is_enabled(),
        "channels_last": model.conv1.weight.is_contiguous(memory_format=torch.channels_last),
        "loader_workers": plan.workers,
        "compute_img_s": statistics.median(r["compute_img_s"] for r in rounds),
        "pipeline_img_s": statistics.median(r["pipeline_img_s"] for r in rounds),
        "ratio": statistics.median(r["pipeline_img_s"] / r["compute_img_s"] for r in rounds),
        "rounds": rounds,
    }


def child_env(device: torch.device, **extra: str) -> dict[str, str]:
    """This environment for a child process, without the toolkit's variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    return {**env, **(DRY_ENV if device.type == "cpu" else {}), **extra}


def job_command(sizes: Sizes) -> list[str]:
    """torchrun (through dogbreed.train.ranks) with one process, running the training job."""
    hyperparameters = {
        "image-size": sizes.image_size,
        "batch-size": sizes.batch_size,
        "epochs": sizes.job_epochs,
        "pretrained": "false",
        "export": "false",  # the ONNX export runs on the CPU after training: not what this times
    }
    args = [word for name, value in hyperparameters.items() for word in (f"--{name}", str(value))]
    launcher = ["-m", "dogbreed.train.ranks", "--nproc-per-node=1", "--standalone"]
    return [sys.executable, *launcher, "-m", "dogbreed.train", *args]


def torchrun_figures(
    sizes: Sizes, device: torch.device, workdir: Path, limit: float | None
) -> Figures:
    """Run the job to the end; its exit code, seconds and logged img/s (last epoch) over ``limit``
    (the compute-only figure; None where the train section failed)."""
    base = workdir / "opt_ml"
    eval_per_class = max(2, sizes.job_per_class // 8)
    splits = {"train": sizes.job_per_class, "valid": eval_per_class, "test": eval_per_class}
    write_sample(base / "input" / "data" / "training", split_sizes=splits)
    command = job_command(sizes)
    log_path = workdir / "torchrun.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(
            command,
            env=child_env(device, SAGEMAKER_BASE_DIR=str(base)),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=sizes.timeout_s,
        ).returncode
    seconds = time.perf_counter() - started
    lines = log_path.read_text(errors="replace").splitlines()
    rates = [m[JOB_RATE] for m in map(parse_metric_line, lines) if JOB_RATE in m]
    completed = code == 0 and (base / "model" / "model.pt").is_file()
    if not completed or not rates:
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"exit code {code}, {len(rates)} metric lines; log ends:\n{tail}")
    return {
        "completed": completed,
        "exit_code": code,
        "job_seconds": seconds,
        "logged_img_s": rates[-1],
        "epochs_img_s": rates,
        "limit_img_s": limit,
        "ratio": rates[-1] / limit if limit else None,
        "command": " ".join(command[1:]),
    }


def server_batch(env: dict[str, str], image_size: int) -> int:
    """The largest batch the server forms, from the settings it reads itself."""
    settings = ServerSettings.from_env(env)
    return settings.max_batch_size or cpu_batch_size(image_size)


def paired(
    in_process: InProcess, port: int, concurrency: int, batch: int, seconds: float
) -> Figures:
    """The in-process pipeline at the batch the server can form, then the server over HTTP."""
    batch = min(concurrency, batch, len(in_process.jpegs))
    limit = in_process.pipeline_rate(batch, seconds / 2)
    served = load_test(port, in_process.jpegs, concurrency, seconds)
    return {
        "img_s": served["rate"],
        "p50_ms": served["p50_ms"],
        "p99_ms": served["p99_ms"],
        "requests": served["requests"],
        "limit_img_s": limit,
        "limit_batch": batch,
        "ratio": served["rate"] / limit,
    }


def serve_figures(sizes: Sizes, device: torch.device, workdir: Path) -> Figures:
    """``dogbreed-serve`` at each concurrency over the in-process pipeline on the same device."""
    model_dir = workdir / "model"
    make_artifact(model_dir, CLASSES, sizes.image_size)
    jpegs = make_jpegs(sizes.serve_jpegs)
    env = child_env(device)
    port = free_port()
    serve = Path(sys.executable).with_name("dogbreed-serve")
    server = ServerUnderTest(model_dir, port, env, workdir / "server.log", serve)
    try:
        server.wait_ready(sizes.timeout_s)
        load_test(port, jpegs, 4, sizes.serve_seconds / 2)  # warm the connections and the batcher
        in_process = DeviceInProcess(model_dir, jpegs, device)
        batch = server_batch(env, sizes.image_size)
        levels = {
            str(c): paired(in_process, port, c, batch, sizes.serve_seconds) for c in CONCURRENCY
        }
    finally:
        server.stop()
    ready = [line for line in server.log_path.read_text().splitlines() if " ready" in line]
    return {
        "server_ready": ready,
        "in_process_allocator": allocator_in_use(),
        "concurrency": levels,
    }


class OutOfTime(Exception):
    """The run's budget (``--budget-s``) ran out."""


def timed_section(fn: Callable[[], Figures], deadline: float) -> Figures:
    """``fn``'s figures and seconds, or its error; skipped once ``deadline`` has passed."""
    if time.monotonic() >= deadline:
        return {"error": "skipped: the run's time budget was spent"}
    started = time.perf_counter()
    try:
        figures = fn()
    except Exception as exc:
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    return {**figures, "seconds": time.perf_counter() - started}


def run_sections(sizes: Sizes, device: torch.device, workdir: Path, budget_s: float) -> Figures:
    """Every section, in order, within ``budget_s`` seconds (SIGALRM ends the one running)."""

    def out_of_time(signum: int, frame: object) -> None:
        raise OutOfTime(f"the run's time budget of {budget_s:g} s ran out")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(max(1, int(budget_s)))
    deadline = time.monotonic() + budget_s
    results: Figures = {}
    try:
        results["train"] = timed_section(lambda: train_figures(sizes, device, workdir), deadline)
        limit = results["train"].get("compute_img_s")
        results["torchrun"] = timed_section(
            lambda: torchrun_figures(sizes, device, workdir, limit), deadline
        )
        results["serve"] = timed_section(lambda: serve_figures(sizes, device, workdir), deadline)
    finally:
        signal.alarm(0)
    return results


def default_output(dry: bool) -> Path:
    name = "gpu-check-dry.json" if dry else "gpu-check.json"
    return Path(os.environ["OUT"]) / name if os.environ.get("OUT") else Path("build") / name


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU device, tiny sizes (the test)")
    parser.add_argument("--out", type=Path, help="JSON file (default $OUT/ or build/)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="whole run (default 450)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.dry and not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible (use --dry on a CPU machine)", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.dry else torch.device("cuda", 0)
    if args.dry:
        torch.set_num_threads(int(DRY_ENV["OMP_NUM_THREADS"]))
    sizes = DRY if args.dry else GPU
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        results = run_sections(sizes, device, Path(tmp), args.budget_s)
    report = {
        "mode": "dry" if args.dry else "gpu",
        "device": device_info(device),
        "sizes": asdict(sizes),
        **results,
        "seconds": time.perf_counter() - started,
    }
    out = args.out or default_output(args.dry)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, figures in results.items() if "error" in figures]
    print(
        f"gpu-check: figures written to {out}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
