"""Bounded reading of archives: one rule wherever an archive is read.

Used for a ``model.tar.gz`` (:func:`extract_tar`, by :mod:`dogbreed.artifact` for the server and
``dogbreed-export``) and for a data set zip's members (:func:`read_bounded`, by ``dogbreed
upload``). The rule:

- what the headers claim is checked before anything is written: the number of members, each
  member's size, and their total (:class:`Budget`), against :class:`Limits` that admit the
  largest artifact the trainer writes with margin;
- sparse tar members are refused (a few hundred bytes can claim a GiB of holes);
- links, devices, absolute paths and ``..`` are skipped, never written;
- bytes are counted as they are read, not trusted from a header (:func:`read_bounded`), and
  tarfile's own reads of the decompressed stream are bounded too (:class:`_BoundedStream`);
- an extraction folder is removed on failure, and when the process that made it exits
  (:func:`temporary_folder`), not when a fork of it (a gunicorn worker) does.

Python's ``tarfile`` ``data`` filter alone is not enough: it caps nothing, lets sparse members
through, and Debian bookworm's Python 3.11.2 lacks it. So every check is made here, on TarInfo.
"""

from __future__ import annotations

import atexit
import bz2
import gzip
import lzma
import math
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

MIB = 1024 * 1024
#: One file of a model artifact: model.pt and model.onnx (resnet18) are ~45 MB, the largest the
#: trainer writes; 256 MiB is over 5x that, and still far from a bomb's GiBs.
MAX_MODEL_FILE_BYTES = 256 * MIB
#: A whole artifact: model.pt + model.onnx + model.int8.onnx (~12 MB) + model.json is ~102 MB;
#: 512 MiB is 5x that.
MAX_MODEL_BYTES = 512 * MIB
#: An artifact holds 2 to 4 files; 1,000 leaves room for anything added beside them, while
#: TarFile, which keeps every header it reads (~1 KB each), stays within a MB.
MAX_MODEL_MEMBERS = 1000
#: One image in a data set zip: a camera JPEG is a few MB (dogImages' are under 10 MB), and
#: ``dogbreed upload`` holds up to 2 x workers (32 at most) of them in memory.
MAX_IMAGE_BYTES = 64 * MIB
#: The largest single read tarfile may make of the decompressed stream: data is copied in CHUNK
#: reads, and a header read whole (a pax record, a long name) is a few KB when honest.
MAX_READ_BYTES = 1 * MIB
#: What a tar stream holds besides its members' data: 512-byte headers, padding, pax records
#: (~2 KB per member, so ~2 MB for MAX_MODEL_MEMBERS); 64 MiB is generous.
STREAM_OVERHEAD_BYTES = 64 * MIB
#: Bytes copied per read.
CHUNK = 1 * MIB


class ArchiveError(ValueError):
    """An archive refused: what was refused, and the cap it would break."""


@dataclass(frozen=True)
class Limits:
    """The caps one kind of archive is read under; None: no cap (see each use)."""

    #: What one member is, for messages ("a model file", "an image").
    member: str
    member_bytes: int
    total_bytes: int | None = None
    members: int | None = None


#: A model.tar.gz, as the training job writes it (and SageMaker stores it).
MODEL_ARCHIVE = Limits("a model file", MAX_MODEL_FILE_BYTES, MAX_MODEL_BYTES, MAX_MODEL_MEMBERS)
#: A data set zip: members are read one at a time and sent to S3, never written to disk, and a
#: data set may hold any number of images (dogImages: 8,351, 1.1 GB), so only a member is capped.
IMAGE_ARCHIVE = Limits("an image", MAX_IMAGE_BYTES)


def _mib(size: int) -> str:
    return f"{size:,} bytes ({size / MIB:,.0f} MiB)"


def check_member(name: str, size: int, limits: Limits) -> None:
    """Refuse a member whose (declared or counted) size is over the cap on one member."""
    if size < 0 or size > limits.member_bytes:
        raise ArchiveError(
            f"{name!r} is {size:,} bytes, over the cap on {limits.member}: "
            f"{_mib(limits.member_bytes)}"
        )


class Budget:
    """What an archive's headers have claimed so far: members and bytes, against ``limits``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.members = 0
        self.total = 0

    def admit(self, name: str, size: int) -> None:
        limits = self.limits
        self.members += 1
        if limits.members is not None and self.members > limits.members:
            raise ArchiveError(f"more than {limits.members:,} members, the cap on an archive")
        check_member(name, size, limits)
        self.total += size
        if limits.total_bytes is not None and self.total > limits.total_bytes:
            raise ArchiveError(
                f"its members claim {self.total:,} bytes up to {name!r}, over the cap on all "
                f"together: {_mib(limits.total_bytes)}"
            )


def read_bounded(stream: IO[bytes], name: str, limits: Limits) -> bytes:
    """All of ``stream``, refused as soon as the bytes read pass the cap on one member.

    Counts what is read, in CHUNK reads: a header's size can lie, and a deflated member can
    inflate a thousandfold, so at most the cap (plus one chunk) is ever held.
    """
    parts, read = [], 0
    while chunk := stream.read(min(CHUNK, limits.member_bytes + 1 - read)):
        read += len(chunk)
        if read > limits.member_bytes:
            raise ArchiveError(
                f"{name!r} inflates past the cap on {limits.member}: {_mib(limits.member_bytes)}"
            )
        parts.append(chunk)
    return b"".join(parts)


class _BoundedStream:
    """The decompressed tar stream, read-only, refusing to go past ``limit`` bytes or to read
    more than MAX_READ_BYTES at once (tarfile reads a pax record or a long name whole)."""

    def __init__(self, inner: IO[bytes], limit: float) -> None:
        self.inner = inner
        self.limit = limit

    def _check(self, end: int) -> None:
        if end > self.limit:
            raise ArchiveError(
                f"the tar stream runs past {self.limit:,} bytes, what its caps allow in all"
            )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_READ_BYTES:
            raise ArchiveError(
                f"a tar header asks to read {size:,} bytes at once, over the cap on one read: "
                f"{_mib(MAX_READ_BYTES)}"
            )
        self._check(self.inner.tell() + size)
        return self.inner.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise ArchiveError("a tar stream is read from its start")
        self._check(offset)
        return self.inner.seek(offset)

    def tell(self) -> int:
        return self.inner.tell()


def _decompressed(path: Path) -> IO[bytes]:
    """``path`` opened for reading, through gzip, bzip2 or xz when its first bytes say so."""
    with path.open("rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(path, "rb")
    return path.open("rb")


def _destination(target: Path, member: tarfile.TarInfo) -> Path | None:
    """Where a member goes under ``target``, or None when it is skipped: anything but a regular
    file, an absolute path, a ``..`` part, or a name that is only ``.``."""
    parts = [p for p in PurePosixPath(member.name).parts if p != "."]
    if not member.isfile() or member.name.startswith("/") or ".." in parts or not parts:
        return None
    return target.joinpath(*parts)


#: What decompressing and parsing a damaged or hostile archive raises (EOFError: truncated;
#: RecursionError: tarfile follows chained long-name headers recursively).
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, RecursionError)


def extract_tar(tarball: Path, target: Path, limits: Limits = MODEL_ARCHIVE) -> list[str]:
    """Write the regular files of ``tarball`` under ``target``; return the names skipped.

    Every header is read and checked first (:class:`Budget`; sparse members refused), and only
    then is anything written. Raises :class:`ArchiveError` naming what was refused and the cap.
    """
    total = limits.total_bytes
    stream_limit = math.inf if total is None else total + STREAM_OVERHEAD_BYTES
    try:
        with _decompressed(tarball) as raw:
            stream = _BoundedStream(raw, stream_limit)
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                budget, members = Budget(limits), []
                for member in tar:
                    if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
                        raise ArchiveError(
                            f"{member.name!r} is a sparse member (claiming {member.size:,} "
                            "bytes); a model file never is, and holes are how a few hundred "
                            "bytes claim GiBs"
                        )
                    budget.admit(member.name, member.size)
                    members.append(member)
                skipped = []
                for member in members:
                    destination = _destination(target, member)
                    if destination is None:
                        skipped.append(member.name)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(member)
                    assert source is not None  # a regular file always has data
                    with source, destination.open("wb") as out:
                        shutil.copyfileobj(source, out, CHUNK)
    except READ_ERRORS as exc:
        raise ArchiveError(f"{type(exc).__name__}: {exc}") from exc
    return skipped


def temporary_folder(prefix: str) -> Path:
    """A new folder under the temporary directory (``$TMPDIR``), removed when this process exits.

    Only by this process: a fork of it (a gunicorn worker, which ends through ``sys.exit`` and so
    runs the handlers it inherited) leaves the folder to the process that made it.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    return folder


def extract_to_temporary(tarball: Path, prefix: str, limits: Limits = MODEL_ARCHIVE) -> Path:
    """:func:`extract_tar` into a :func:`temporary_folder`, which is removed at once on failure."""
    folder = temporary_folder(prefix)
    try:
        extract_tar(tarball, folder, limits)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
