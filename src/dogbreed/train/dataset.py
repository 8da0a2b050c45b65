"""The training data as torch sees it: decoded, transformed samples, and batches that skip bad files.

The splits themselves (which folders, which classes, which files are readable) come from
:mod:`dogbreed.image_folders`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from dogbreed.imaging import decode_rgb

log = logging.getLogger(__name__)


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
