"""A request body's deadline: max(BODY_TIMEOUT_S, size / BODY_MIN_BYTES_PER_S) from its headers
(:mod:`.tuning`); a chunked body's grows with the bytes that came."""

from __future__ import annotations

import socket
import time
from typing import Any

from werkzeug.exceptions import RequestTimeout

from dogbreed.serve import tuning


class BodyTimeout(RequestTimeout):
    """A request body that did not arrive by its deadline: the app answers 408 (JSON)."""


class BodySocket:
    """The connection's socket as the request's body reader sees it: every ``recv`` bounded by the
    body's deadline (:class:`BodyTimeout` past it), and the end of the body noted."""

    def __init__(self, sock: socket.socket, deadline: float, expected: int | None, done: Any):
        self._sock = sock
        self._start = time.monotonic()
        self.deadline = deadline
        self._expected = expected  # bytes still to come; None: chunked
        self._received = 0
        self._done = done  # called once, when the last expected byte is in
        self.timed_out = False

    def recv(self, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self._time_out()
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            self._time_out()
        finally:
            self._sock.settimeout(None)
        self._received += len(data)
        if self._expected is None:  # chunked: the floor, or 1 MB/s of what came so far
            rate_s = self._received / tuning.BODY_MIN_BYTES_PER_S
            self.deadline = max(self.deadline, self._start + rate_s)
        elif self._received >= self._expected:
            self.finish()
        return data

    def finish(self) -> None:
        if self._done is not None:
            self._done()
            self._done = None

    def _time_out(self) -> None:
        self.timed_out = True
        self.finish()
        raise BodyTimeout(
            f"the request body did not arrive in time (at most max({tuning.BODY_TIMEOUT_S:g} s, "
            f"size / {tuning.BODY_MIN_BYTES_PER_S / 1e6:g} MB/s) after its headers)"
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
