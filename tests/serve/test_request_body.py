"""request_body: which bodies spool, their limits, and a TMPDIR that cannot take one."""

from __future__ import annotations

import errno
import io
import tempfile

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from dogbreed.serve import request_body, tuning
from dogbreed.serve.request_body import SpoolError, read_into_memory, spool, spools

ABOVE = tuning.SPOOL_ABOVE_BYTES


@pytest.mark.parametrize(
    ("content_type", "size", "expected"),
    [
        ("image/jpeg", ABOVE + 1, True),
        ("image/png; charset=binary", ABOVE + 1, True),
        ("Application/X-Image", None, True),  # chunked: its size is unknown
        ("image/jpeg", ABOVE, False),  # a real-time body stays in memory
        ("application/json", 10 * ABOVE, False),  # parsed in memory, within its own limit
        ("text/plain", None, False),  # refused (415) before it is read
        (None, ABOVE + 1, False),
    ],
)
def test_which_bodies_spool(content_type: str | None, size: int | None, expected: bool) -> None:
    assert spools(content_type, size) is expected


def test_a_spooled_body_reads_back_whole_and_its_file_is_on_disk() -> None:
    body = bytes(range(256)) * (ABOVE // 256 + 5)
    with spool(io.BytesIO(body), len(body)) as spooled:
        assert spooled._rolled  # type: ignore[attr-defined]  # past SPOOL_ABOVE_BYTES: a file
        assert spooled.read() == body


def test_a_spooled_body_over_the_limit_is_413() -> None:
    with pytest.raises(RequestEntityTooLarge):
        spool(
            io.BytesIO(bytes(3 * request_body.SPOOL_CHUNK_BYTES)),
            2 * request_body.SPOOL_CHUNK_BYTES,
        )


def test_reading_into_memory_stops_one_byte_past_the_limit() -> None:
    assert read_into_memory(io.BytesIO(bytes(100)), 10) == bytes(11)
    assert read_into_memory(io.BytesIO(bytes(5)), 10) == bytes(5)


def test_a_tmpdir_that_cannot_take_the_body_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", full)
    with pytest.raises(
        SpoolError, match=r"cannot spool the request body to .* \(TMPDIR\): .*No space"
    ):
        spool(io.BytesIO(bytes(ABOVE + 1)), 2 * ABOVE)
    assert SpoolError.status == 503
