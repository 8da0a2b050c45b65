"""One bounded polling loop, for every wait on a SageMaker job (training, tuning, transform)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from dogbreed.launch.errors import LaunchError

Result = TypeVar("Result")


def poll(
    probe: Callable[[], Result | None],
    what: str,
    timeout_s: float,
    interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
) -> Result:
    """Call ``probe`` every ``interval_s`` until it returns something other than None; return it.

    ``probe`` raises to stop at a failure. After ``timeout_s`` without an answer, raise a
    :class:`LaunchError` that names ``what`` was awaited. ``sleep`` defaults to :func:`time.sleep`,
    looked up at each call.
    """
    deadline = clock() + timeout_s
    while (result := probe()) is None:
        left = deadline - clock()
        if left <= 0:
            raise LaunchError(f"gave up after {timeout_s:g} s waiting for {what}")
        (sleep or time.sleep)(min(interval_s, left))
    return result


def raise_if_failed(described: Mapping[str, Any], status: str, what: str) -> None:
    """Raise with its FailureReason when a job's ``status`` is Failed or Stopped."""
    if status in ("Failed", "Stopped"):
        reason = described.get("FailureReason", "no reason given")
        raise LaunchError(f"{what} {status.lower()}: {reason}")
