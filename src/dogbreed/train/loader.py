"""Batches from loader processes to the training step, sized to the shared memory the job gets.

Loader processes hand batches to the training process through shared memory (/dev/shm). Docker's
default is 64 MB, and SageMaker training jobs have no setting for it, while one float32 batch of
512 images at 224 px is 308 MB. So, at start, :func:`plan_transit` compares the free space on
/dev/shm with what the loaders would hold there at once (every rank on this host), and:

1. batches cross as uint8 crops, normalised after the transfer (a quarter of float32's bytes);
2. a batch that would not fit crosses in equal pieces, reassembled into one batch before the
   step (the step, its BatchNorm statistics and its gradient see the whole batch);
3. fewer batches are prefetched, then fewer loader processes, and as a last resort the training
   process decodes its own images (no shared memory at all).

:class:`BatchLoader` runs the plan. Every wait for a batch is bounded by ``stall_timeout``, and a
loader failure (a process killed, stopped or out of shared memory) ends the job with a
:class:`LoaderError` that names the cause and the fix.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from dogbreed.train.dataset import ImageDataset, collate_skipping_bad

log = logging.getLogger(__name__)

SHM_PATH = "/dev/shm"
#: Share of the free /dev/shm the plan may fill: the rest absorbs the pinned-memory thread,
#: allocator rounding and other processes of the container.
SHM_SHARE = 0.5
#: Batches each loader process prepares ahead. torch's default; 4 measured no faster here (the
#: loaders, not the queue, bound throughput on CPU) and doubles the shared memory held.
PREFETCH = 2
#: Pieces of a batch held outside the queue at once: the one the step uses, the one being pinned.
HELD = 2
#: Smallest piece worth a transfer before the plan gives up prefetching or processes instead.
MIN_PIECE = 8
#: Seconds past the stall timeout before the watchdog kills the loader processes.
WATCHDOG_GRACE = 2.0

Batch = tuple[torch.Tensor, torch.Tensor] | None


class LoaderError(RuntimeError):
    """The loader processes failed or stalled; the message names the cause and the fix."""


def shm_free_bytes(path: str = SHM_PATH) -> int | None:
    """Free bytes on the shared-memory file system, or None where there is none to measure."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def default_workers(local_ranks: int) -> int:
    """Loader processes per rank: the cores a rank can spare beside its own, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_rank = max(1, (cores or 1) // max(1, local_ranks))
    return max(1, min(8, per_rank - 1))


def _mb(count: float) -> str:
    return f"{count / 1e6:.1f} MB"


@dataclass(frozen=True)
class TransitPlan:
    """How one rank's batches cross from its loader processes."""

    batch: int  # images per step on this rank
    piece: int  # images per transfer (the batch crosses in ceil(batch / piece) pieces)
    workers: int  # loader processes of this rank (0: the training process loads)
    prefetch: int  # pieces each loader process prepares ahead
    image_bytes: int  # one uint8 image crop
    local_ranks: int  # training processes on this host, each with its own loaders
    shm_free: int | None  # free bytes on /dev/shm at start (None: not measured)

    @property
    def pieces_per_batch(self) -> int:
        return math.ceil(self.batch / self.piece)

    @property
    def shm_needed(self) -> int:
        """Bytes held in shared memory at most, by every rank on this host."""
        if not self.workers:
            return 0
        held = self.workers * self.prefetch + HELD
        return held * self.piece * self.image_bytes * self.local_ranks

    def describe(self, reason: str) -> str:
        free = "unknown" if self.shm_free is None else _mb(self.shm_free)
        how = (
            f"{self.workers} loader process(es) x {self.prefetch} prefetched, batches of"
            f" {self.batch} cross as uint8 in {self.pieces_per_batch} piece(s) of <= {self.piece}"
            if self.workers
            else f"batches of {self.batch} decoded in the training process (no shared memory)"
        )
        return (
            f"data loading: {how}; shared memory needed {_mb(self.shm_needed)} of {free} free on"
            f" {SHM_PATH} ({self.local_ranks} rank(s) on this host, {_mb(self.image_bytes)} per"
            f" image): {reason}"
        )


def _largest_piece(batch: int, workers: int, prefetch: int, budget: float, image: int) -> int:
    """The largest equal split of ``batch`` whose pieces fit ``budget`` bytes in flight."""
    fits = int(budget // ((workers * prefetch + HELD) * image))
    if fits >= batch:
        return batch
    if fits < 1:
        return 0
    return math.ceil(batch / math.ceil(batch / fits))


def plan_transit(
    batch: int, image_size: int, workers: int, local_ranks: int, shm_free: int | None
) -> tuple[TransitPlan, str]:
    """The plan for this rank, and the reason for it in words."""
    image = 3 * image_size * image_size

    def plan(piece: int, procs: int, prefetch: int) -> TransitPlan:
        return TransitPlan(batch, piece, procs, prefetch, image, local_ranks, shm_free)

    if workers == 0:
        return plan(batch, 0, 0), "workers=0 asked for"
    if shm_free is None:
        return plan(batch, workers, PREFETCH), f"{SHM_PATH} not found, so not limited"
    budget = shm_free * SHM_SHARE / local_ranks
    whole = plan(batch, workers, PREFETCH)
    if whole.shm_needed <= shm_free * SHM_SHARE:
        return whole, f"whole batches fit in {SHM_SHARE:.0%} of the free shared memory"
    smallest = min(batch, MIN_PIECE)
    for procs in range(workers, 0, -1):
        for prefetch in (PREFETCH, 1):
            piece = _largest_piece(batch, procs, prefetch, budget, image)
            if piece >= smallest:
                return plan(piece, procs, prefetch), (
                    f"a whole batch would need {_mb(whole.shm_needed)}, above"
                    f" {SHM_SHARE:.0%} of the free shared memory: split for transit"
                )
    return plan(batch, 0, 0), (
        f"not even {smallest} images per loader process fit in {SHM_SHARE:.0%} of the free"
        " shared memory: loading in the training process instead (slower; give the container"
        " more /dev/shm, e.g. docker run --shm-size 1g, to use loader processes)"
    )


def diagnose_stall(stall_timeout: float, detail: str) -> str:
    return (
        f"no batch came from the loader processes for {stall_timeout:g} s (stall-timeout):"
        " a loader process is stopped or stuck, e.g. on a hung file system or paused by a"
        " debugger. Check the data channel's storage; raise stall-timeout only if single"
        f" batches truly take that long to read. ({detail.strip().splitlines()[0] if detail.strip() else 'stalled'})"
    )


def diagnose(exc: BaseException, stall_timeout: float) -> str | None:
    """What a DataLoader error means for the user, or None when it is not one."""
    text = str(exc)
    if "DataLoader timed out" in text:
        return diagnose_stall(stall_timeout, text)
    if "DataLoader worker" in text and ("exited unexpectedly" in text or "killed by" in text):
        return (
            f"a loader process died ({text.splitlines()[0]}). Killed by SIGKILL usually means the"
            " kernel's out-of-memory killer: lower batch-size or workers, or use an instance"
            " with more memory."
        )
    if "shared memory" in text or "No space left on device" in text or "Bus error" in text:
        return (
            f"the loader processes ran out of shared memory ({text.splitlines()[0]}): something"
            f" else fills {SHM_PATH}. Set workers=0, or give the container more shared memory"
            " (docker run --shm-size 1g)."
        )
    if "Caught" in text and "DataLoader worker" in text:
        return f"a loader process failed: {text.strip()}"
    return None


def stop_loader_processes(timeout: float = 5.0) -> None:
    """Kill this process's loader children (a stopped one ignores SIGTERM and would block exit)."""
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout)


class BatchLoader:
    """Full batches ``(uint8 images, labels)`` for one pass, in the order of ``batches``.

    ``batches`` is an iterable of index lists (a sampler, re-read each pass). Each batch crosses
    in the plan's pieces and is reassembled by copying each piece out of shared memory as it
    arrives, so at most one piece per batch is held there. A batch whose every image failed to
    decode is yielded as None.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batches: Iterable[list[int]],
        plan: TransitPlan,
        stall_timeout: float,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.batches, self.plan = dataset, batches, plan
        self.stall_timeout = stall_timeout
        self.pin_memory = pin_memory

    def __iter__(self) -> Iterator[Batch]:
        batches = [list(b) for b in self.batches]
        piece = self.plan.piece
        workers = self.plan.workers
        loader = DataLoader(
            self.dataset,
            batch_sampler=[b[i : i + piece] for b in batches for i in range(0, len(b), piece)],
            num_workers=workers,
            collate_fn=collate_skipping_bad,
            pin_memory=self.pin_memory,
            prefetch_factor=self.plan.prefetch if workers else None,
            timeout=self.stall_timeout if workers else 0,
        )
        stream = iter(loader)
        for batch in batches:
            yield self._assemble(stream, len(batch), math.ceil(len(batch) / piece))

    def _next(self, stream: Iterator[Batch]) -> Batch:
        """The next piece, within the stall timeout whatever the loader processes do.

        DataLoader's own timeout does not cover every wait: a piece already queued by a loader
        that is then stopped blocks while its shared memory is handed over. So a watchdog kills
        the loader processes past the timeout, which turns any such wait into an error.
        """
        stalled = threading.Event()

        def on_stall() -> None:
            stalled.set()
            stop_loader_processes(timeout=0)

        watchdog = threading.Timer(self.stall_timeout + WATCHDOG_GRACE, on_stall)
        watchdog.daemon = True
        if self.plan.workers:
            watchdog.start()
        try:
            return next(stream)
        except Exception as exc:
            if stalled.is_set():
                raise LoaderError(diagnose_stall(self.stall_timeout, str(exc))) from exc
            message = diagnose(exc, self.stall_timeout)
            if message is None:
                raise
            raise LoaderError(message) from exc
        finally:
            watchdog.cancel()

    def _assemble(self, stream: Iterator[Batch], size: int, count: int) -> Batch:
        """One batch from its ``count`` pieces, each copied out of shared memory on arrival."""
        if count == 1:
            return self._next(stream)
        images: torch.Tensor | None = None
        labels: list[torch.Tensor] = []
        filled = 0
        for _ in range(count):
            piece = self._next(stream)
            if piece is None:
                continue
            if images is None:
                shape, dtype = piece[0].shape[1:], piece[0].dtype
                images = torch.empty((size, *shape), dtype=dtype, pin_memory=self.pin_memory)
            images[filled : filled + len(piece[1])].copy_(piece[0])
            filled += len(piece[1])
            labels.append(piece[1])
            del piece  # the shared memory goes back before the next piece arrives
        return None if images is None else (images[:filled], torch.cat(labels))
