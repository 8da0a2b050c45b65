"""Cross-request batching: request threads submit inputs, one thread runs them in batches.

The inference thread takes whatever is queued (up to ``max_batch_size``) as soon as it is free, so
a lone request runs at once (no added latency) while requests that arrive during a forward pass
are gathered into the next one. A request thread may also :meth:`Batcher.announce` itself as soon
as it starts reading a request: a partial batch then waits (at most ``max_wait_s``) for announced
inputs. It also waits (just as briefly) to fill up to the peak number of requests in flight over
the last second: under steady load, clients answered by one batch come straight back, and without
this their requests would keep forming half batches beside the others'. With one client the peak
is one, so a lone request still runs at once.

The thread ``prepare``s each input (decoding, say) the moment it takes it, while the batch is
still gathering: the time spent waiting for the next requests to arrive is spent on the ones that
already have. An input whose ``prepare`` raises fails its own request at once, never the batch.

The thread's busy time per input (preparing and the forward pass, not waiting) is measured in
``service_time``: admission control estimates queue waits from it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from dogbreed.serve.admission import ServiceTime

log = logging.getLogger(__name__)

#: How long a peak of requests in flight counts as the load to batch for.
PEAK_WINDOW_S = 1.0


class BatcherStopped(RuntimeError):
    """The batcher no longer accepts work."""


@dataclass
class _Item:
    value: Any
    future: Future[Any] = field(default_factory=Future)


class Batcher:
    """Run ``run_batch`` on inputs from many threads, ``max_batch_size`` at a time, on one thread.

    ``run_batch`` maps a list of prepared inputs to a list of results, one per input.
    ``prepare`` (default: none) maps each input before it joins a batch, on the same thread.
    ``on_start`` runs first on the inference thread (per-thread setup such as torch threads).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_batch_size: int,
        max_wait_s: float = 0.0,
        prepare: Callable[[Any], Any] | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._run_batch = run_batch
        self._prepare = prepare
        self._on_start = on_start
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: deque[_Item] = deque()
        self._ready = threading.Condition()
        self._announced = 0
        self._in_flight = 0
        self._peak = 0
        self._peak_at = 0.0
        self._thread_state = threading.local()
        self._stopped = False
        self.batches_run = 0
        self.items_run = 0
        self.service_time = ServiceTime()
        self._prepare_s = 0.0  # time spent preparing the forming batch (inference thread only)
        self._thread = threading.Thread(target=self._loop, name="dogbreed-batcher", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Within this block the calling thread is expected to submit: partial batches wait for it."""
        with self._ready:
            self._announced += 1
            self._in_flight += 1
            self._note_peak()
        self._thread_state.announced = True
        try:
            yield
        finally:
            with self._ready:
                self._in_flight -= 1
                if self._thread_state.announced:  # left without submitting (e.g. a bad request)
                    self._thread_state.announced = False
                    self._announced -= 1
                    self._ready.notify()

    def _note_peak(self) -> None:
        """Track the most requests in flight at once over the last PEAK_WINDOW_S (lock held)."""
        now = time.monotonic()
        if self._in_flight >= self._peak or now - self._peak_at > PEAK_WINDOW_S:
            self._peak, self._peak_at = self._in_flight, now

    def submit(self, inputs: Sequence[Any], ahead: bool = False) -> list[Future[Any]]:
        """Queue each input (``ahead``: before everything queued); each future yields its result.

        ``ahead`` is for the next part of a request already under way, which should not queue
        again behind requests that arrived after it.
        """
        items = [_Item(value) for value in inputs]
        with self._ready:
            if self._stopped:
                raise BatcherStopped("the inference thread has stopped")
            if ahead:
                self._queue.extendleft(reversed(items))
            else:
                self._queue.extend(items)
            if getattr(self._thread_state, "announced", False):
                self._thread_state.announced = False
                self._announced -= 1
            self._ready.notify()
        return [item.future for item in items]

    def run(
        self, inputs: Sequence[Any], timeout_s: float | None = None, ahead: bool = False
    ) -> list[Any]:
        """Submit ``inputs`` and wait for their results, in order; raise the first failure."""
        futures = self.submit(inputs, ahead)
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
        return rows

    def stop(self) -> None:
        """Finish what is queued, then end the inference thread."""
        with self._ready:
            self._stopped = True
            self._ready.notify()
        self._thread.join()

    def _should_wait(self, taken: int, target: int, deadline: float) -> bool:
        """Whether a forming batch of ``taken`` inputs waits for more (lock held)."""
        return (
            (self._announced > 0 or taken < target)
            and not self._stopped
            and time.monotonic() < deadline
        )

    def _gather(self) -> list[tuple[_Item, Any]] | None:
        """Wait for work, then take and prepare inputs until the batch is due; None once stopped."""
        with self._ready:
            while not self._queue:
                if self._stopped:
                    return None
                self._ready.wait()
            deadline = time.monotonic() + self.max_wait_s
            if deadline - self._peak_at > PEAK_WINDOW_S:
                self._note_peak()  # the old peak has expired: start from the current load
            target = min(self.max_batch_size, self._peak)
        batch: list[tuple[_Item, Any]] = []
        taken = 0
        while taken < self.max_batch_size:
            with self._ready:
                while not self._queue and self._should_wait(taken, target, deadline):
                    self._ready.wait(max(0.0, deadline - time.monotonic()))
                if not self._queue:
                    break
                count = min(self.max_batch_size - taken, len(self._queue))
                items = [self._queue.popleft() for _ in range(count)]
            taken += count
            for item in items:
                if item.future.set_running_or_notify_cancel():  # skip what nobody waits for
                    batch += self._prepared(item)
        return batch

    def _prepared(self, item: _Item) -> list[tuple[_Item, Any]]:
        """``[(item, prepared input)]``, or ``[]`` with the item failed if ``prepare`` raised."""
        if self._prepare is None:
            return [(item, item.value)]
        start = time.perf_counter()
        try:
            return [(item, self._prepare(item.value))]
        except Exception as exc:  # a bad input fails its own request only
            item.future.set_exception(exc)
            return []
        finally:
            self._prepare_s += time.perf_counter() - start

    def _loop(self) -> None:
        if self._on_start is not None:
            self._on_start()
        while (batch := self._gather()) is not None:
            prepare_s, self._prepare_s = self._prepare_s, 0.0
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = self._run_batch([value for _, value in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
            except Exception as exc:  # one bad batch must not kill the thread
                log.exception("inference failed for a batch of %d", len(batch))
                for item, _ in batch:
                    item.future.set_exception(exc)
                continue
            self.service_time.observe(len(batch), prepare_s + time.perf_counter() - start)
            self.batches_run += 1
            self.items_run += len(batch)
            for (item, _), result in zip(batch, results, strict=True):
                item.future.set_result(result)
