"""The server's memory allocator: tcmalloc where installed, because glibc's malloc re-faults
ResNet18's activations.

A forward pass allocates its activations (megabytes each, 64-byte aligned) and frees them again.
Under glibc's malloc, whether the next pass gets the same pages back depends on the process's
history: measured on 2 cores at 224 px, the server at concurrency 8 took 0 page faults per image
in some runs and 1,000-2,000 in others (59-62 img/s against 66-72). Under tcmalloc: 8 page faults
per image and 66-71 img/s in every phase. An allocator has to be in place before the process
starts, so ``dogbreed-serve`` re-executes itself once with tcmalloc in ``LD_PRELOAD``.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from dogbreed.child_env import safe_child_env

#: DOGBREED_MALLOC values: tcmalloc if installed, tcmalloc or fail, glibc's malloc.
CHOICES = ("auto", "tcmalloc", "system")
DEFAULT_CHOICE = "auto"
TCMALLOC_PACKAGE = "libtcmalloc-minimal4"


class AllocatorError(RuntimeError):
    """DOGBREED_MALLOC holds a bad value or asks for an allocator that is not installed."""


def tcmalloc_library() -> str | None:
    """The soname of tcmalloc (minimal) if the dynamic linker can find it."""
    return ctypes.util.find_library("tcmalloc_minimal")


def preload_for(env: Mapping[str, str]) -> str | None:
    """The library to add to LD_PRELOAD before serving, or None to run as we are."""
    choice = env.get("DOGBREED_MALLOC", "").strip().lower() or DEFAULT_CHOICE
    if choice not in CHOICES:
        raise AllocatorError(f"DOGBREED_MALLOC must be one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "system" or "tcmalloc" in env.get("LD_PRELOAD", ""):
        return None
    library = tcmalloc_library()
    if library is None and choice == "tcmalloc":
        raise AllocatorError(
            f"DOGBREED_MALLOC=tcmalloc but tcmalloc is not installed (apt-get install {TCMALLOC_PACKAGE})"
        )
    return library


def env_with_allocator(env: Mapping[str, str]) -> dict[str, str] | None:
    """``env`` with tcmalloc added to LD_PRELOAD, or None where no preload is due."""
    library = preload_for(env)
    if library is None:
        return None
    return {**env, "LD_PRELOAD": " ".join(filter(None, [library, env.get("LD_PRELOAD", "")]))}


def reexec_with_allocator(args: Sequence[str]) -> None:
    """Replace this process by ``python -m dogbreed.serve.server ARGS`` with tcmalloc preloaded.

    Returns (does nothing) where no preload is due: DOGBREED_MALLOC=system, tcmalloc already
    loaded, or not installed under ``auto``.
    """
    env = env_with_allocator(os.environ)
    if env is not None:
        command = [sys.executable, "-m", "dogbreed.serve.server", *args]
        os.execve(sys.executable, command, safe_child_env(env))


def allocator_in_use(pid: int | str = "self") -> str:
    """``tcmalloc`` if mapped into process ``pid``, else ``glibc malloc``."""
    maps = Path(f"/proc/{pid}/maps")
    if maps.exists() and "libtcmalloc" in maps.read_text():
        return "tcmalloc"
    return "glibc malloc"
