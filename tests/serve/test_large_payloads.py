"""Issue 21: an asynchronous endpoint's large payloads stream to disk instead of memory.

With ``SAGEMAKER_MAX_PAYLOAD_IN_MB=1024`` (an async endpoint's 1 GB), a raw image body over
``SPOOL_ABOVE_BYTES`` is written to an unlinked temporary file in ``TMPDIR`` as it arrives and the
image decodes from there; a JSON body is held in memory, so it is limited to
``MAX_JSON_BODY_BYTES``. Before (1112485), 4 raw 200 MB bodies at once raised the worker by
1,013 MiB, and 625 MiB of it stayed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from dogbreed.serve import tuning

from .conftest import Server, jpeg_bytes
from .tuned import start_tuned_server

MIB = 1024 * 1024
LARGE = 200 * MIB
CLIENTS = 4
#: The spool budget the small-budget server runs with: one 20 MiB body, not two.
SMALL_SPOOL_BUDGET = 30 * MIB
PADDED = 20 * MIB


def padded_jpeg(size: int) -> bytes:
    """A small real JPEG followed by zeros up to ``size`` bytes (decoders stop at its end)."""
    image = jpeg_bytes(5, size=(160, 120))
    return image + bytes(size - len(image))


def start(model_dir: Path, tmp: Path, **tuned: float) -> Server:
    spool_dir = tmp / "spool"
    spool_dir.mkdir()
    server = start_tuned_server(
        model_dir,
        tmp,
        env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024", "TMPDIR": str(spool_dir)},
        **tuned,
    )
    server.wait_ready()
    return server


@pytest.fixture(scope="module")
def async_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An async endpoint's settings: 1 GB payloads; production budgets."""
    server = start(model_dir, tmp_path_factory.mktemp("async-logs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def small_spool_server(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """1 GB payloads, a spool budget of 30 MiB (one 20 MiB body at a time)."""
    server = start(
        model_dir, tmp_path_factory.mktemp("spool-logs"), SPOOL_BUDGET_BYTES=SMALL_SPOOL_BUDGET
    )
    try:
        yield server
    finally:
        server.stop()


def post(
    server: Server, body: bytes | Iterator[bytes], kind: str = "image/jpeg"
) -> requests.Response:
    return requests.post(
        f"{server.url}/invocations", data=body, headers={"Content-Type": kind}, timeout=120
    )


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def spool_dir(server: Server) -> Path:
    return server.log_path.parent / "spool"


def open_spool_files(server: Server) -> list[str]:
    """The files in the server's TMPDIR its worker holds open (unlinked ones included)."""
    (pid,) = server.worker_pids()
    targets = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            targets.append(os.readlink(fd))
    ours = [t for t in targets if t.startswith(str(spool_dir(server)))]
    return [t for t in ours if not Path(t).name.startswith("wgunicorn-")]  # its heartbeat file


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length bytes of body) from ``sock``."""
    answer = b""
    while b"\r\n\r\n" not in answer and (part := sock.recv(65536)):
        answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length and (part := sock.recv(65536)):
        body += part
    return head + b"\r\n\r\n" + body


def same_predictions(answer: requests.Response, expected: dict) -> bool:
    """The same breeds in the same order, probabilities equal within batching's rounding."""
    rows, want = answer.json()["predictions"], expected["predictions"]
    return [[p["class_index"] for p in row] for row in rows] == [
        [p["class_index"] for p in row] for row in want
    ] and all(
        abs(p["probability"] - q["probability"]) < 1e-4
        for row, other in zip(rows, want, strict=True)
        for p, q in zip(row, other, strict=True)
    )


def test_large_raw_bodies_are_spooled_not_held(async_server: Server) -> None:
    server = async_server
    expected = post(server, jpeg_bytes(5, size=(160, 120))).json()
    (pid,) = server.worker_pids()
    worker = psutil.Process(pid)
    baseline = worker.memory_info().rss
    body = padded_jpeg(LARGE)
    peak, done = [baseline], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], worker.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda _: post(server, body), range(CLIENTS)))
    seconds = time.monotonic() - start
    time.sleep(1)
    done.set()
    sampler.join(5)
    after = worker.memory_info().rss
    # Each spooling body may hold its in-memory start and two read buffers.
    bound = baseline + CLIENTS * (tuning.SPOOL_ABOVE_BYTES + 2 * MIB) + 128 * MIB
    print(
        f"\n{CLIENTS} x {LARGE // MIB} MiB raw bodies in {seconds:.1f}s: worker RSS "
        f"{baseline / MIB:.0f} MiB, peak +{(peak[0] - baseline) / MIB:.0f}, after "
        f"+{(after - baseline) / MIB:.0f}; bound +{(bound - baseline) / MIB:.0f}"
    )
    assert [a.status_code for a in answers] == [200] * CLIENTS, answers[0].text[:300]
    assert all(same_predictions(a, expected) for a in answers)
    assert peak[0] <= bound and after <= bound
    assert open_spool_files(server) == [], "a spooled body's file is still open"
    assert not any(spool_dir(server).iterdir())


def test_a_chunked_raw_body_is_spooled(async_server: Server) -> None:
    body = padded_jpeg(PADDED)
    chunks = (body[i : i + MIB] for i in range(0, len(body), MIB))  # no Content-Length
    answer = post(async_server, chunks)
    assert answer.status_code == 200, answer.text[:300]
    assert same_predictions(answer, post(async_server, jpeg_bytes(5, size=(160, 120))).json())


def test_a_json_body_over_its_limit_is_413_before_it_is_read(async_server: Server) -> None:
    size = tuning.MAX_JSON_BODY_BYTES + 1
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: %d\r\n\r\n{"images": ["' % size
    )
    with socket.create_connection(address(async_server), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(head)
        answer = read_response(sock)
        seconds = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert f"{tuning.MAX_JSON_BODY_BYTES:,}".encode() in answer and b"raw image/jpeg" in answer
    assert seconds < 2


def test_the_spool_budget_answers_503_and_frees_what_a_cut_body_held(
    small_spool_server: Server,
) -> None:
    server = small_spool_server
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: %d\r\n\r\n" % PADDED
    )
    body = padded_jpeg(PADDED)
    with socket.create_connection(address(server), timeout=10) as holder:
        holder.sendall(head + body[: PADDED // 2])  # holds 20 MiB of the 30 MiB spool budget
        time.sleep(0.5)
        refused = post(server, body)
        assert refused.status_code == 503, refused.text[:300]
        assert refused.headers["Retry-After"] == "1"
        assert f"{SMALL_SPOOL_BUDGET:,}-byte spool budget" in refused.json()["message"]
    # The holder hung up mid-body: its reservation and its file are gone.
    deadline = time.monotonic() + 10
    while (answer := post(server, body)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert answer.status_code == 200, answer.text[:300]
    assert open_spool_files(server) == []
