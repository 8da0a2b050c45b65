"""The training loader alone under Docker's default 64 MB /dev/shm, against ample shared memory.

    python benchmarks/bench_loader.py [--batch-size 64 512] [--image-size 224] [--batches 6]

No training step runs (on CPU it would hide the loader): each side iterates the trainer's own
:class:`dogbreed.train.loader.BatchLoader` with the plan :func:`dogbreed.train.job.transit_plan` makes for
the shared memory it finds, over the same photo-sized JPEGs. The 64 MB side runs in a private
mount namespace with a 64 MiB tmpfs on /dev/shm (``unshare``, root). Each round measures both sides,
alternating which goes first, and the ratio is the median of per-round ratios against the goal (>= 0.9).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_train import photo_like_jpegs

from dogbreed.hyperparams import Hyperparameters
from dogbreed.train.dataset import ImageDataset
from dogbreed.train.distributed import World
from dogbreed.train.job import transit_plan
from dogbreed.train.loader import BatchLoader
from dogbreed.train.presets import train_crop
from dogbreed.train.sampling import EpochBatchSampler

GOAL = 0.9
SMALL_SHM = "64m"  # Docker's default --shm-size


def measure(folder: Path, batch: int, image_size: int, batches: int) -> dict[str, object]:
    """Images/s of one loader pass (loader start-up included, as in every epoch)."""
    hp = Hyperparameters(batch_size=batch, image_size=image_size)
    samples = [(p, 0) for p in sorted(folder.glob("*.jpg"))]
    dataset = ImageDataset(samples, train_crop(image_size), image_size, seed=0)
    sampler = EpochBatchSampler(batch * batches, batch, seed=0)
    plan = transit_plan(hp, World())
    start = time.perf_counter()
    count = sum(len(labels) for _, labels in BatchLoader(dataset, sampler, plan, 60.0))
    seconds = time.perf_counter() - start
    return {"img_per_s": count / seconds, "plan": plan.describe("").rsplit(":", 1)[0]}


def run_side(folder: Path, args: argparse.Namespace, batch: int, small: bool) -> dict:
    inner = [sys.executable, __file__, "--inner", str(folder), "--batch-size", str(batch)]
    inner += ["--image-size", str(args.image_size), "--batches", str(args.batches)]
    if small:
        mount = f'mount -t tmpfs -o size={SMALL_SHM} tmpfs /dev/shm && exec "$@"'
        inner = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", *inner]
    result = subprocess.run(inner, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"the {'64 MB' if small else 'ample'} side failed:\n{result.stderr[-3000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(measure(args.inner, args.batch_size[0], args.image_size, args.batches)))
        return
    if shutil.which("unshare") is None:
        raise SystemExit("needs unshare (util-linux) and root for the 64 MB /dev/shm side")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        count = max(args.batch_size) * args.batches
        photo_like_jpegs(Path(tmp), count)
        print(f"{count} JPEGs ~500x375, image size {args.image_size}, {args.rounds} rounds")
        for batch in args.batch_size:
            ratios = []
            for n in range(args.rounds):
                sides = (False, True) if n % 2 == 0 else (True, False)  # alternate who goes first
                measured = {small: run_side(Path(tmp), args, batch, small) for small in sides}
                ample, small = measured[False], measured[True]
                ratios.append(small["img_per_s"] / ample["img_per_s"])
                print(
                    f"  batch {batch} round {n + 1}: ample {ample['img_per_s']:6.1f} img/s,"
                    f" 64 MB {small['img_per_s']:6.1f} img/s, ratio {ratios[-1]:.3f}"
                )
            print(f"  64 MB plan: {small['plan']}")
            ratio = statistics.median(ratios)
            verdicts.append(ratio >= GOAL)
            print(
                f"batch {batch}: loader under 64 MB shm / ample: {ratio:.3f}"
                f"  goal >= {GOAL} -> {'PASS' if ratio >= GOAL else 'FAIL'}"
            )
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
