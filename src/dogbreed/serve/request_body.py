"""Reading a request body: in memory, or (a large raw image) into a temporary file as it arrives.

An asynchronous endpoint's payload may be 1 GB. A raw image body larger than ``SPOOL_ABOVE_BYTES``
(or of unannounced size: chunked) is written to an unlinked temporary file in ``TMPDIR`` as it
arrives, so a worker holds megabytes of it in memory, not the body; the image decodes from the
file. A JSON body is parsed in memory, so it is limited to ``MAX_JSON_BODY_BYTES``. The worker
(:mod:`.worker`) reserves memory or disk by the same rule (:func:`spools`) before a body is read.
"""

from __future__ import annotations

import tempfile
from typing import IO, BinaryIO

from werkzeug.exceptions import RequestEntityTooLarge

from dogbreed.serve import tuning

JSON = "application/json"
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image")
#: Bytes read from the socket per write to the spool file.
SPOOL_CHUNK_BYTES = 1024 * 1024


class JsonBodyTooLarge(RequestEntityTooLarge):
    """A JSON body over ``MAX_JSON_BODY_BYTES`` (HTTP 413): a large image should come raw."""

    description = (
        f"a JSON body is parsed in memory and may be at most {tuning.MAX_JSON_BODY_BYTES:,} "
        "bytes: send a large image as a raw image/jpeg or image/png body, which is spooled to disk"
    )


class SpoolError(Exception):
    """The temporary directory cannot take a body (full, read-only...): HTTP 503."""

    status = 503


def mimetype(content_type: str | None) -> str:
    """``image/jpeg; charset=x`` -> ``image/jpeg``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def spools(content_type: str | None, size: int | None) -> bool:
    """Whether a body of ``size`` bytes (None: chunked) goes to a temporary file, not memory."""
    if mimetype(content_type) not in IMAGE_TYPES:
        return False
    return size is None or size > tuning.SPOOL_ABOVE_BYTES


def read_into_memory(stream: BinaryIO, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``stream`` (one more than allowed shows the excess)."""
    parts: list[bytes] = []
    held = 0
    while held <= limit:
        part = stream.read(min(SPOOL_CHUNK_BYTES, limit + 1 - held))
        if not part:
            break
        parts.append(part)
        held += len(part)
    return b"".join(parts)


def spool(stream: BinaryIO, limit: int) -> IO[bytes]:
    """``stream`` written to a temporary file as it arrives (in memory up to ``SPOOL_ABOVE_BYTES``,
    then an unlinked file in ``TMPDIR``), rewound; :class:`RequestEntityTooLarge` past ``limit``.

    The caller closes the file; an unlinked file leaves nothing behind even if the worker dies.
    """
    spooled = tempfile.SpooledTemporaryFile(max_size=tuning.SPOOL_ABOVE_BYTES)  # noqa: SIM115
    try:
        written = 0
        while part := stream.read(SPOOL_CHUNK_BYTES):
            written += len(part)
            if written > limit:
                raise RequestEntityTooLarge()
            try:
                spooled.write(part)
            except OSError as exc:
                raise SpoolError(
                    f"cannot spool the request body to {tempfile.gettempdir()} (TMPDIR): {exc}"
                ) from None
        spooled.seek(0)
        return spooled
    except BaseException:
        spooled.close()
        raise
