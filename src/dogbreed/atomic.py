"""One way to write a file so that a kill at any instant leaves the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Results are read by other users (a non-root model server, SageMaker's uploaders): rw-r--r--,
#: where ``mkstemp`` alone would leave 0600.
FILE_MODE = 0o644


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
        write(tmp)
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
