"""One training epoch and one evaluation pass, with throughput and ETA in the log."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from dogbreed.train.distributed import World, all_reduce_sum
from dogbreed.train.presets import normalize
from dogbreed.train.smdebug_hook import DebuggerHook

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Precision:
    """AMP settings: on GPU bf16 where supported, else fp16 with a gradient scaler; off on CPU."""

    enabled: bool
    dtype: torch.dtype
    scaler: torch.amp.GradScaler

    @classmethod
    def choose(cls, device: torch.device, amp: bool) -> Precision:
        enabled = amp and device.type == "cuda"
        bf16 = enabled and torch.cuda.is_bf16_supported()
        dtype = torch.bfloat16 if bf16 else torch.float16
        return cls(enabled, dtype, torch.amp.GradScaler("cuda", enabled=enabled and not bf16))

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)


@dataclass(frozen=True)
class Step:
    """What a training or evaluation step uses."""

    model: nn.Module  # DDP-wrapped under torchrun
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    world: World
    hook: DebuggerHook


@dataclass(frozen=True)
class EpochLog:
    """Where an epoch starts and how its progress lines read."""

    label: str  # e.g. "epoch 2/5"
    first_batch: int  # batches of the epoch already trained (a resumed job)
    total_batches: int
    log_interval: int


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
    step: Step, batches: Iterable, totals: EpochTotals, epoch: EpochLog
) -> Iterator[int]:
    """Train over ``batches``, adding to ``totals``; yield the batches done after each step.

    The caller decides between steps (recording progress, stopping): nothing here changes
    anything but the model, the optimizer and ``totals``.
    """
    model, world = step.model, step.world
    model.train()
    step.hook.train()
    start = time.perf_counter()
    seconds_before = totals.seconds
    images_seen = 0
    done = epoch.first_batch
    for batch in batches:
        done += 1
        if batch is None:  # every image of the batch failed to decode
            yield done
            continue
        images, labels = to_device(*batch, world.device)
        try:
            with step.precision.autocast():
                logits = model(images)
                loss = step.criterion(logits, labels)
            step.optimizer.zero_grad(set_to_none=True)
            step.precision.scaler.scale(loss).backward()
            step.precision.scaler.step(step.optimizer)
            step.precision.scaler.update()
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StepOutOfMemory(done, labels.numel(), world.device, cause) from None
        correct = (logits.argmax(1) == labels).sum().item()
        totals.add(loss.item(), correct, labels.numel())
        images_seen += labels.numel()
        elapsed = time.perf_counter() - start
        totals.seconds = seconds_before + elapsed
        if world.is_main and (done % epoch.log_interval == 0 or done == epoch.total_batches):
            rate = images_seen / max(elapsed, 1e-9) * world.size
            remaining = (epoch.total_batches - done) * elapsed / max(done - epoch.first_batch, 1)
            log.info(
                "%s step %d/%d batch %d loss %.4f acc %.4f | %.1f img/s | epoch ETA %s",
                epoch.label,
                done,
                epoch.total_batches,
                labels.numel() * world.size,
                totals.loss,
                totals.accuracy,
                rate,
                _eta(remaining),
            )
        yield done


@torch.inference_mode()
def evaluate(step: Step, batches: Iterable) -> EpochTotals:
    """Loss and accuracy over this rank's shard, summed over all ranks."""
    step.model.eval()
    step.hook.eval()
    totals = EpochTotals()
    for batch in batches:
        if batch is None:
            continue
        images, labels = to_device(*batch, step.world.device)
        with step.precision.autocast():
            logits = step.model(images)
            loss = step.criterion(logits, labels)
        totals.add(loss.item(), (logits.argmax(1) == labels).sum().item(), labels.numel())
    return totals.reduced(step.world)
