"""Admission control: an invocation that could not be answered in time is shed at once.

SageMaker gives ``/invocations`` 60 s. A request that waits behind a long queue and is answered
(or timed out) after that is wasted work for the server and a late failure for the client, so each
worker refuses it up front with ``503`` and ``Retry-After`` instead. Two limits, per worker:

- the estimated queue wait, ``images already admitted x measured seconds per image``, must stay
  within ``max_wait_s`` (default half the request timeout: the estimate may be wrong by 2x before
  an admitted request runs late);
- the requests waiting for inference must leave request threads free (``max_requests``), so that
  ``/ping`` and the quick 503s always find a thread however many clients connect.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator


class Overloaded(RuntimeError):
    """The worker sheds this request: answer 503 with ``Retry-After: retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceTime:
    """Seconds of inference-thread work per input: an exponentially weighted mean over batches."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self._seconds_per_input: float | None = None

    def observe(self, inputs: int, seconds: float) -> None:
        """Record one batch of ``inputs`` that kept the inference thread busy ``seconds``."""
        sample = seconds / inputs
        old = self._seconds_per_input
        self._seconds_per_input = sample if old is None else old + self.weight * (sample - old)

    def restart(self) -> None:
        """Forget what was measured (cold first passes), so the next batch sets the figure."""
        self._seconds_per_input = None

    @property
    def seconds_per_input(self) -> float | None:
        return self._seconds_per_input


class Admission:
    """Count the images and requests a worker has admitted; refuse what would wait too long.

    ``math.inf`` as either limit: no limit.
    """

    def __init__(
        self,
        max_wait_s: float,
        max_requests: float,
        seconds_per_image: Callable[[], float | None],
    ) -> None:
        self.max_wait_s = max_wait_s
        self.max_requests = max_requests
        self._seconds_per_image = seconds_per_image
        self._lock = threading.Lock()
        self._images = 0
        self._requests = 0

    def queue_wait_s(self) -> float:
        """The estimated wait of a request admitted now, before its own images run."""
        return self._images * (self._seconds_per_image() or 0.0)

    @contextlib.contextmanager
    def admit(self, images: int) -> Iterator[None]:
        """Hold a place for ``images`` images for the block; raise :class:`Overloaded` if full."""
        with self._lock:
            wait = self.queue_wait_s()
            if self._requests >= self.max_requests:
                raise Overloaded(
                    f"{self._requests} requests are already waiting for this worker's model, "
                    f"the most it queues: retry later",
                    1,
                )
            if wait > self.max_wait_s:
                raise Overloaded(
                    f"the queue ahead would take ~{wait:.1f}s, more than the "
                    f"{self.max_wait_s:g}s this server lets a request wait: retry later",
                    math.ceil(wait - self.max_wait_s),  # until it is back under the limit
                )
            self._images += images
            self._requests += 1
        try:
            yield
        finally:
            with self._lock:
                self._images -= images
                self._requests -= 1
