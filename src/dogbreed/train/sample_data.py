"""A small bundled sample data set in the dogImages layout, for smoke tests and the demo.

``python -m dogbreed.train.sample_data OUT`` writes ``OUT/{train,valid,test}/NNN.Breed_name/*.jpg``.
The pictures are drawn, not photographs: each "breed" has its own shape and palette, placed,
sized and lit at random over a noisy background, so a model can learn them in a few epochs.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

BREEDS: tuple[str, ...] = ("Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita")
SPLIT_SIZES: dict[str, int] = {"train": 10, "valid": 4, "test": 4}
_PALETTES = ((200, 60, 40), (40, 150, 60), (50, 80, 200), (210, 180, 40))


def _draw(breed_index: int, rng: random.Random) -> Image.Image:
    width, height = rng.randint(120, 200), rng.randint(100, 160)
    background = tuple(rng.randint(60, 190) for _ in range(3))
    image = Image.effect_noise((width, height), rng.uniform(20, 50)).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (width, height), background), 0.6)
    draw = ImageDraw.Draw(image)
    base = _PALETTES[breed_index % len(_PALETTES)]
    colour = tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in base)
    size = rng.uniform(0.35, 0.6) * min(width, height)
    x, y = rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)
    box = (x - size / 2, y - size / 2, x + size / 2, y + size / 2)
    shape = breed_index % 4
    if shape == 0:
        draw.ellipse(box, fill=colour)
    elif shape == 1:
        draw.rectangle(box, fill=colour)
    elif shape == 2:
        draw.polygon([(x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
    else:
        for offset in range(int(box[0]), int(box[2]), max(3, int(size / 6))):
            draw.rectangle((offset, box[1], offset + size / 12, box[3]), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: The int8 check's job on the digit scans (``make int8-check``, benchmarks/int8_digits.py): the
#: splits (``rest`` joins valid and test as held-out images: 1,197) and its hyperparameters. A
#: training step at 224 px costs ~0.7 core-seconds per image on 2 cores, so it trains layer3,
#: layer4 and the head on 600 images for 4 epochs.
INT8_CHECK_SPLITS = {"train": 600, "valid": 100, "test": 100, "rest": 997}
INT8_CHECK_HYPERPARAMETERS = {
    "image-size": "224",
    "epochs": "4",
    "warmup-epochs": "1",
    "batch-size": "32",
    "lr": "0.02",
    "trainable": "layer3",
    "label-smoothing": "0.1",
    "log-interval": "5",
}


def write_digits(
    root: Path, per_split: dict[str, int], size: int = 32, suffix: str = ".png"
) -> None:
    """Real images for tests: scikit-learn's 1,797 bundled 8x8 scans of handwritten digits,
    upscaled to ``size`` px, in dogImages-style folders (``001.zero/``), splits disjoint."""
    import numpy as np  # noqa: PLC0415 (test-only dependencies, kept off the job's imports)
    from sklearn.datasets import load_digits  # noqa: PLC0415

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    start = 0
    for split, count in per_split.items():
        for n in order[start : start + count]:
            label = int(digits.target[n])
            folder = root / split / f"{label + 1:03d}.{DIGIT_NAMES[label]}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[n] * (255 / 16)).astype(np.uint8)
            image = Image.fromarray(pixels).resize((size, size), Image.BILINEAR)
            image.save(folder / f"{n}{suffix}")
        start += count


def write_sample(
    out_dir: Path,
    breeds: tuple[str, ...] = BREEDS,
    split_sizes: dict[str, int] = SPLIT_SIZES,
    seed: int = 0,
) -> Path:
    """Write the sample tree under ``out_dir`` and return it."""
    rng = random.Random(seed)
    for split, count in split_sizes.items():
        for index, breed in enumerate(breeds):
            folder = out_dir / split / f"{index + 1:03d}.{breed}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                path = folder / f"{breed}_{split}_{n:03d}.jpg"
                _draw(index, rng).save(path, "JPEG", quality=90)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write train/ valid/ test/ into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_sample(args.out_dir, seed=args.seed)
    total = sum(SPLIT_SIZES.values()) * len(BREEDS)
    print(f"wrote {total} images of {len(BREEDS)} breeds to {args.out_dir}")


if __name__ == "__main__":
    main()
