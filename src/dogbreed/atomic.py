"""One way to write a file so that a kill at any instant leaves the old file or the new one."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Results are read by other users (a non-root model server, SageMaker's uploaders): rw-r--r--,
#: where ``mkstemp`` alone would leave 0600.
FILE_MODE = 0o644
#: A failed write with less free space than this left is blamed on a full disk: writers such as
#: torch.save report a short write as a RuntimeError that carries no errno.
FULL_BELOW_BYTES = 64 << 20
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write that ran out of room; its message names the file, what was written and what is free."""

    def __str__(self) -> str:
        return str(self.strerror)  # without OSError's "[Errno 28] " prefix


def write_atomically(path: Path, write: Callable[[Path], object], replace: bool = True) -> bool:
    """Write ``path`` through ``write(temp_path)`` in the same folder, then move it into place.

    With ``replace=False`` an existing file wins and this returns False (the first writer of a
    result shared by several processes keeps it); otherwise it returns True.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            write(tmp)
        except Exception as exc:
            full = disk_full(exc, path, tmp)
            if full is None:
                raise
            raise full from exc
        tmp.chmod(FILE_MODE)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def disk_full(error: BaseException, path: Path, partial: Path) -> DiskFullError | None:
    """A DiskFullError for ``error`` if the disk ran out while writing ``path``, else None."""
    free = shutil.disk_usage(path.parent).free
    causes, cause = [], error
    while cause is not None and len(causes) < 8:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    out_of_room = any(getattr(c, "errno", None) in DISK_FULL_ERRNOS for c in causes)
    if not out_of_room and free >= FULL_BELOW_BYTES:
        return None
    written = partial.stat().st_size if partial.exists() else 0
    return DiskFullError(
        errno.ENOSPC,
        f"no space left on the device holding {path.parent} to write {path.name}: "
        f"{written:,} bytes were written when it failed and {free:,} bytes are free "
        f"({type(error).__name__}: {error})",
    )
