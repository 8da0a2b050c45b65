"""Cross-request batching: request threads submit tensors, one thread runs them in batches.

The inference thread takes everything queued (up to ``max_batch_size``) as soon as it is free, so
a lone request runs at once (no added latency) while requests that arrive during a forward pass
are gathered into the next one. ``max_wait_s`` > 0 additionally holds a partial batch open that
long for more requests, trading latency for larger batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


class BatcherStopped(RuntimeError):
    """The batcher no longer accepts work."""


@dataclass
class _Item:
    tensor: torch.Tensor
    future: Future[torch.Tensor] = field(default_factory=Future)


class Batcher:
    """Run ``forward`` on stacked inputs from many threads, ``max_batch_size`` at a time."""

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        max_batch_size: int,
        max_wait_s: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._forward = forward
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: deque[_Item] = deque()
        self._ready = threading.Condition()
        self._stopped = False
        self.batches_run = 0
        self.items_run = 0
        self._thread = threading.Thread(target=self._loop, name="dogbreed-batcher", daemon=True)
        self._thread.start()

    def submit(self, tensors: Sequence[torch.Tensor]) -> list[Future[torch.Tensor]]:
        """Queue each tensor (one input, no batch dimension); each future yields its output row."""
        items = [_Item(t) for t in tensors]
        with self._ready:
            if self._stopped:
                raise BatcherStopped("the inference thread has stopped")
            self._queue.extend(items)
            self._ready.notify()
        return [item.future for item in items]

    def run(self, tensors: Sequence[torch.Tensor], timeout_s: float | None = None) -> torch.Tensor:
        """Submit ``tensors`` and wait for their outputs, stacked in order."""
        futures = self.submit(tensors)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        rows = []
        try:
            for future in futures:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                rows.append(future.result(timeout=remaining))
        except BaseException:
            for future in futures:
                future.cancel()  # queued work nobody waits for is skipped
            raise
        return torch.stack(rows)

    def stop(self) -> None:
        """Finish what is queued, then end the inference thread."""
        with self._ready:
            self._stopped = True
            self._ready.notify()
        self._thread.join()

    def _take_batch(self) -> list[_Item] | None:
        with self._ready:
            while not self._queue:
                if self._stopped:
                    return None
                self._ready.wait()
            if self.max_wait_s > 0 and len(self._queue) < self.max_batch_size:
                deadline = time.monotonic() + self.max_wait_s
                while len(self._queue) < self.max_batch_size and not self._stopped:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)
            count = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                outputs = self._forward(torch.stack([item.tensor for item in batch]))
            except Exception as exc:  # one bad batch must not kill the thread
                log.exception("inference failed for a batch of %d", len(batch))
                for item in batch:
                    item.future.set_exception(exc)
                continue
            self.batches_run += 1
            self.items_run += len(batch)
            for item, row in zip(batch, outputs, strict=True):
                item.future.set_result(row)
