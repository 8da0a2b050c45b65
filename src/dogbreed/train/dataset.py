"""Channels -> ImageFolder splits -> datasets and loaders, with bad-file handling.

Which channel or folder is which split is :mod:`dogbreed.splits`' rule (SageMaker channels under
``input/data/``: ``train``, ``valid`` and ``test``, or one ``training`` channel holding
``train/ valid/ test/``). The class list must agree across splits. Unreadable files are skipped and counted; too many, or a missing or
empty split, raise :class:`DataError` with what was expected and what was found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from dogbreed.contract import IMAGE_SUFFIXES
from dogbreed.imaging import decode_rgb
from dogbreed.splits import class_label, locate_splits

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The input data does not have the expected shape."""


def _folder_names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def find_split_dirs(channels: Mapping[str, Path]) -> dict[str, Path]:
    """Map each split to its folder from the job's channels (:mod:`dogbreed.splits`' rule)."""
    located = locate_splits(channels, _folder_names, lambda root, name: root / name)
    if located.missing:
        raise DataError(
            f"missing split(s) {', '.join(located.missing)}: expected channels train, valid (or"
            f" validation) and test, or one 'training' channel holding train/ valid/ test/; found"
            f" channels {sorted(channels) or 'none'}"
            + (f" and in 'training': {sorted(located.inside)}" if located.root else "")
        )
    return located.found


@dataclass(frozen=True)
class Split:
    """One split's readable files, with the bad ones counted."""

    name: str
    root: Path
    class_folders: list[str]
    samples: list[tuple[Path, int]]
    bad_files: list[tuple[Path, str]]


def _check_image(path: Path) -> str | None:
    """None when ``path`` opens as an image; else the reason it does not."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises many types for bad files
        return f"{type(exc).__name__}: {exc}"
    return None


def scan_split(name: str, root: Path) -> Split:
    """List class folders and check every file; raise when the split is empty."""
    class_folders = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not class_folders:
        raise DataError(
            f"split '{name}' at {root} has no class folders (expected e.g. 001.Affenpinscher/)"
        )
    samples: list[tuple[Path, int]] = []
    bad: list[tuple[Path, str]] = []
    for index, folder in enumerate(class_folders):
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            reason = _check_image(path)
            if reason is None and path.suffix.lower() not in IMAGE_SUFFIXES:
                reason = f"unsupported file type {path.suffix or '(none)'}"
            if reason is None:
                samples.append((path, index))
            else:
                bad.append((path, reason))
    if not samples:
        raise DataError(
            f"split '{name}' at {root} has no readable images in {len(class_folders)} class folders"
            f" ({len(bad)} unreadable files)"
        )
    return Split(name, root, class_folders, samples, bad)


def check_classes(splits: Sequence[Split]) -> list[str]:
    """The class labels, identical across splits; else a DataError naming the differences."""
    reference = splits[0]
    for split in splits[1:]:
        if split.class_folders != reference.class_folders:
            only_ref = sorted(set(reference.class_folders) - set(split.class_folders))
            only_this = sorted(set(split.class_folders) - set(reference.class_folders))
            raise DataError(
                f"class folders differ between '{reference.name}' and '{split.name}': "
                f"only in {reference.name}: {only_ref or 'none'}; only in {split.name}: "
                f"{only_this or 'none'}"
                + ("" if only_ref or only_this else " (same names, different order)")
            )
    return [class_label(f) for f in reference.class_folders]


def check_bad_fraction(splits: Sequence[Split], max_bad_fraction: float) -> None:
    """Log skipped files per split; raise when a split's bad fraction exceeds the limit."""
    for split in splits:
        total = len(split.samples) + len(split.bad_files)
        if not split.bad_files:
            continue
        log.warning(
            "split %s: skipping %d of %d files that are not readable images",
            split.name,
            len(split.bad_files),
            total,
        )
        for path, reason in split.bad_files[:10]:
            log.warning("  skipped %s (%s)", path, reason)
        fraction = len(split.bad_files) / total
        if fraction > max_bad_fraction:
            raise DataError(
                f"split '{split.name}': {len(split.bad_files)} of {total} files"
                f" ({fraction:.1%}) are not readable images, above max-bad-fraction"
                f" {max_bad_fraction:.1%}; first: {split.bad_files[0][0]} ({split.bad_files[0][1]})"
            )


class ImageDataset(Dataset):
    """(path, label) samples decoded with PIL and transformed.

    JPEGs are decoded at the smallest DCT scale that keeps both sides >= ``decode_size``.

    With ``seed`` set, each item's augmentation draws from torch's RNG seeded by
    (seed, epoch, index) inside :func:`torch.random.fork_rng` (torchvision's transforms take no
    generator), so an epoch's batches are the same whatever the worker count and wherever a
    resumed run starts, and the process's own RNG is left as it was. A file that fails to decode
    yields ``None`` (dropped by :func:`collate_skipping_bad`) and a warning, never a crash.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable[[Image.Image], torch.Tensor],
        decode_size: int,
        seed: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.decode_size = decode_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                rgb = decode_rgb(image, self.decode_size)
        except Exception as exc:
            log.warning("skipping unreadable image %s: %s", path, exc)
            return None
        if self.seed is None:
            return self.transform(rgb), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            return self.transform(rgb), label


def _shared_like(first: torch.Tensor, count: int) -> torch.Tensor | None:
    """In a loader process, an empty tensor for ``count`` items in shared memory; else None.

    Allocating the batch in shared memory here, instead of letting the queue move it there while
    pickling it on a background thread, turns a full /dev/shm into an error that reaches the
    training process (a failure on that thread is only printed, and the batch never arrives).
    """
    if get_worker_info() is None:
        return None
    return torch.empty((count, *first.shape), dtype=first.dtype).share_memory_()


def collate_skipping_bad(batch: list) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack (image, label) pairs, dropping items that failed to decode."""
    good = [item for item in batch if item is not None]
    if not good:
        return None
    images, labels = zip(*good, strict=True)
    label_tensor = torch.tensor(labels)
    out = _shared_like(images[0], len(images))
    if out is not None:
        label_tensor.share_memory_()
    return torch.stack(images, out=out), label_tensor
