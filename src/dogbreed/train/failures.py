"""Why a process ended, in words a user can act on (for ``output/failure``)."""

from __future__ import annotations

import signal

_LIKELY = {
    signal.SIGKILL: (
        "nothing in the job sends it, so it is most likely the kernel's out-of-memory killer"
        " (the container's or instance's memory limit). Try a smaller batch-size or image-size,"
        " fewer workers (each loader process holds batches of its own), or an instance with more"
        " memory"
    ),
    signal.SIGBUS: (
        "usually shared memory (/dev/shm) running out under a loader. Set workers=0, or give the"
        " container more shared memory (docker run --shm-size 1g)"
    ),
    signal.SIGSEGV: "a crash in native code; the log above shows what ran last",
}


def describe_signal(signum: int, who: str) -> str:
    """``who`` was killed by ``signum``: the signal by name and its most likely cause."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    likely = _LIKELY.get(signum, "it was sent from outside the job")
    return f"{who} was killed by {name} (signal {signum}): {likely}."
