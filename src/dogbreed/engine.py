"""One training epoch and one evaluation pass, with throughput and ETA in the log."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from dogbreed.debugger import DebuggerHook
from dogbreed.distributed import World, all_reduce_sum, any_rank
from dogbreed.presets import normalize

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Training was asked to stop (SIGTERM) between two steps."""


class StepOutOfMemory(RuntimeError):
    """A training step ran out of device (or host) memory."""

    def __init__(self, step: int, images: int, device: torch.device, cause: str) -> None:
        super().__init__(f"out of memory on {device} at step {step} ({images} images): {cause}")
        self.step, self.images, self.device = step, images, device


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure to allocate."""
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


@dataclass
class Precision:
    """AMP settings: on GPU bf16 where supported, else fp16 with a gradient scaler."""

    device: torch.device
    enabled: bool

    def __post_init__(self) -> None:
        self.enabled = self.enabled and self.device.type == "cuda"
        self.dtype = (
            torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.enabled and self.dtype == torch.float16
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)


def to_device(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the device; uint8 images (as loaders send them) are normalised there."""
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        images = normalize(images)
    images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


@dataclass
class EpochTotals:
    """Running sums for one pass; ``partial`` survives a checkpoint mid-epoch."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    seconds: float = 0.0

    def add(self, loss: float, correct: float, count: int) -> None:
        self.loss_sum += loss * count
        self.correct += correct
        self.count += count

    def reduced(self, world: World) -> EpochTotals:
        loss_sum, correct, count = all_reduce_sum([self.loss_sum, self.correct, self.count], world)
        return EpochTotals(loss_sum, correct, count, self.seconds)

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable,
    precision: Precision,
    world: World,
    hook: DebuggerHook,
    totals: EpochTotals,
    progress: Callable[[int], None],
    stop_requested: Callable[[], bool],
    label: str,
    first_batch: int,
    total_batches: int,
    log_interval: int,
) -> EpochTotals:
    """Train over ``batches``; ``progress(batches_done)`` runs after each step.

    Raises StopRequested (on every rank at the same step) when a stop was asked for.
    """
    model.train()
    hook.train()
    start = time.perf_counter()
    seconds_before = totals.seconds
    images_seen = 0
    step = first_batch
    for batch in batches:
        if batch is None:  # every image of the batch failed to decode
            step += 1
            progress(step)
            continue
        images, labels = to_device(*batch, world.device)
        try:
            with precision.autocast():
                logits = model(images)
                loss = criterion(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            precision.scaler.scale(loss).backward()
            precision.scaler.step(optimizer)
            precision.scaler.update()
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StepOutOfMemory(step + 1, labels.numel(), world.device, cause) from None
        correct = (logits.argmax(1) == labels).sum().item()
        totals.add(loss.item(), correct, labels.numel())
        images_seen += labels.numel()
        step += 1
        elapsed = time.perf_counter() - start
        totals.seconds = seconds_before + elapsed
        progress(step)
        if world.is_main and (step % log_interval == 0 or step == total_batches):
            rate = images_seen / max(elapsed, 1e-9) * world.size
            remaining = (total_batches - step) * elapsed / max(step - first_batch, 1)
            log.info(
                "%s step %d/%d batch %d loss %.4f acc %.4f | %.1f img/s | epoch ETA %s",
                label,
                step,
                total_batches,
                labels.numel() * world.size,
                totals.loss,
                totals.accuracy,
                rate,
                _eta(remaining),
            )
        if any_rank(stop_requested(), world):
            raise StopRequested
    return totals


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    criterion: nn.Module,
    batches: Iterable,
    precision: Precision,
    world: World,
    hook: DebuggerHook,
) -> EpochTotals:
    """Loss and accuracy over this rank's shard, summed over all ranks."""
    model.eval()
    hook.eval()
    totals = EpochTotals()
    for batch in batches:
        if batch is None:
            continue
        images, labels = to_device(*batch, world.device)
        with precision.autocast():
            logits = model(images)
            loss = criterion(logits, labels)
        totals.add(loss.item(), (logits.argmax(1) == labels).sum().item(), labels.numel())
    return totals.reduced(world)
