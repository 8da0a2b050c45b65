"""Training throughput: the full input pipeline against the compute-only step, in one run.

    python benchmarks/bench_train.py [--batch-size 32] [--image-size 224] [--steps 8]

Both measurements run the trainer's own step (:func:`dogbreed.train.engine.train_one_epoch`) on the
same model, batch size and image size:

- compute-only: batches of random tensors already in memory (the limit);
- full pipeline: JPEG files on disk -> decode -> RandomResizedCrop/flip -> uint8 transit ->
  normalise -> step, through the trainer's loader plan (workers, pieces, sampler, collate).

It prints images/s for each and their ratio against the goal (>= 0.9).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

from dogbreed.hyperparams import Hyperparameters
from dogbreed.model import build_model
from dogbreed.train.dataset import ImageDataset
from dogbreed.train.distributed import World
from dogbreed.train.engine import EpochLog, EpochTotals, Precision, Step, train_one_epoch
from dogbreed.train.job import transit_plan
from dogbreed.train.loader import BatchLoader
from dogbreed.train.presets import train_crop
from dogbreed.train.sampling import EpochBatchSampler
from dogbreed.train.smdebug_hook import DebuggerHook

GOAL = 0.9


def photo_like_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """JPEGs the size of dogImages photos (~500x375), with texture so they compress like photos."""
    rng = random.Random(seed)
    paths = []
    for n in range(count):
        size = (rng.randint(420, 560), rng.randint(330, 420))
        image = Image.effect_noise(size, 40).convert("RGB")
        image = Image.blend(
            image, Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3))), 0.5
        )
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randint(0, size[0]), rng.randint(0, size[1])
            r = rng.randint(10, 120)
            draw.ellipse(
                (x - r, y - r, x + r, y + r), fill=tuple(rng.randint(0, 255) for _ in range(3))
            )
        path = folder / f"{n:04d}.jpg"
        image.filter(ImageFilter.GaussianBlur(1)).save(path, "JPEG", quality=88)
        paths.append(path)
    return paths


class StepTimer:
    """Times training steps with the trainer's own step function on one model."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        precision = Precision.choose(device, amp=True)
        world = World(device=device)
        self.step = Step(model, nn.CrossEntropyLoss(), optimizer, precision, world, DebuggerHook())

    @property
    def precision(self) -> Precision:
        return self.step.precision

    def images_per_second(self, batches, steps: int) -> float:
        """Images/s over ``steps`` steps drawn from ``batches``, after one untimed warm-up step."""
        iterator = iter(batches)
        self._run([next(iterator)], 1, EpochTotals())
        totals = EpochTotals()
        start = time.perf_counter()
        self._run((next(iterator) for _ in range(steps)), steps, totals)
        return totals.count / (time.perf_counter() - start)

    def _run(self, batches, steps: int, totals: EpochTotals) -> None:
        for _ in train_one_epoch(self.step, batches, totals, EpochLog("bench", 0, steps, 10**9)):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=-1, help="-1: the trainer's default")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hp = Hyperparameters(
        batch_size=args.batch_size, image_size=args.image_size, workers=args.workers
    )
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, batch {hp.batch_size}, size {hp.image_size}"
    )

    torch.manual_seed(0)
    timer = StepTimer(build_model(133).to(device, memory_format=torch.channels_last), device)
    images = torch.randn(hp.batch_size, 3, hp.image_size, hp.image_size)
    labels = torch.randint(0, 133, (hp.batch_size,))
    in_memory = iter(lambda: (images, labels), None)  # the same batch, every step

    with tempfile.TemporaryDirectory() as tmp:
        count = hp.batch_size * (args.steps + 1)
        paths = photo_like_jpegs(Path(tmp), count)
        samples = [(p, i % 133) for i, p in enumerate(paths)]
        dataset = ImageDataset(samples, train_crop(hp.image_size), hp.image_size, seed=0)
        sampler = EpochBatchSampler(len(dataset), hp.batch_size, seed=0)
        plan = transit_plan(hp, World(device=device))
        print(f"data loader workers: {plan.workers}, {count} JPEGs ~500x375, {args.rounds} rounds")
        # Alternate the two measurements so that load from elsewhere hits both alike; each full
        # round starts a fresh loader (worker start-up included, as in every training epoch).
        rounds = []
        for n in range(args.rounds):
            compute = timer.images_per_second(in_memory, args.steps)
            sampler.set_epoch(n)
            loader = BatchLoader(dataset, sampler, plan, hp.stall_timeout, device.type == "cuda")
            full = timer.images_per_second(loader, args.steps)
            rounds.append((compute, full))
            print(
                f"  round {n + 1}: compute {compute:6.1f} img/s, full {full:6.1f} img/s, ratio {full / compute:.3f}"
            )
    compute = statistics.median(c for c, _ in rounds)
    full = statistics.median(f for _, f in rounds)
    ratio = statistics.median(f / c for c, f in rounds)
    print(f"medians over {args.rounds} rounds")
    print(f"compute-only step : {compute:8.1f} img/s  (in-memory tensors)")
    print(f"full pipeline     : {full:8.1f} img/s  (JPEG decode + augmentation + step)")
    print(
        f"ratio full/compute: {ratio:8.3f}  goal >= {GOAL}  -> {'PASS' if ratio >= GOAL else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
