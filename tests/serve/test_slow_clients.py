"""Issue 21: slow clients get deadlines from their first byte and cannot shut /ping out.

On da1db7c, once a request's first byte arrived gunicorn read the rest without a deadline, on a
request thread: N slow connections held every thread and /ping timed out at every probe; a body
shorter than its Content-Length got no answer for 40 s and more.

The server here runs the real worker with its deadlines shortened (``tuning`` patched before the
server starts, :func:`start_tuned_server`) and 16 threads per worker, which is what a hard
``ulimit -n`` of 288 gives it (``fit_open_file_limit``), so that N stays near a hundred.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dogbreed.serve import tuning

from .conftest import Server
from .tuned import OPEN_FILES_FOR_16_THREADS, start_tuned_server

HEADER_TIMEOUT_S = 3.0
BODY_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def tuned_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_tuned_server(
        model_dir,
        tmp_path_factory.mktemp("slow-logs"),
        open_files=OPEN_FILES_FOR_16_THREADS,
        HEADER_TIMEOUT_S=HEADER_TIMEOUT_S,
        BODY_TIMEOUT_S=BODY_TIMEOUT_S,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def threads_of(server: Server) -> tuple[int, int]:
    """Workers and threads per worker, as the running server's master logged them."""
    found = re.search(r"(\d+) cpu worker\(s\) x (\d+) threads", server.log())
    assert found, server.log()[-2000:]
    return int(found[1]), int(found[2])


def answer_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sends until it closes, or until ``seconds``; and when it closed."""
    start = time.monotonic()
    sock.settimeout(seconds)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except TimeoutError:
        return answer, float("inf")
    except ConnectionResetError:
        pass
    return answer, time.monotonic() - start


def test_production_deadlines() -> None:
    assert tuning.HEADER_TIMEOUT_S == 10
    assert tuning.BODY_TIMEOUT_S == 30
    assert tuning.BODY_MIN_BYTES_PER_S == 1_000_000
    # A full 6 MB real-time body keeps the 30 s floor; a 1 GB asynchronous one gets 1,074 s.
    assert max(tuning.BODY_TIMEOUT_S, 6 * 2**20 / tuning.BODY_MIN_BYTES_PER_S) == 30


class SlowClients:
    """``count`` connections that each send one byte of a request head per second; a connection
    the server closes is opened again."""

    HEAD = b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000

    def __init__(self, server: Server, count: int) -> None:
        self.address = address(server)
        self.count = count
        self.stop = threading.Event()
        self.reopened = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self) -> tuple[socket.socket, int] | None:
        try:
            sock = socket.create_connection(self.address, timeout=2)
        except OSError:
            return None
        sock.setblocking(False)
        return sock, 0

    def run(self) -> None:
        conns = [self.connect() for _ in range(self.count)]
        while not self.stop.wait(1.0):
            for i, conn in enumerate(conns):
                if conn is None:
                    conns[i] = self.connect()
                    continue
                sock, sent = conn
                try:
                    sock.send(self.HEAD[sent % len(self.HEAD) : sent % len(self.HEAD) + 1])
                    conns[i] = (sock, sent + 1)
                except OSError:
                    sock.close()
                    self.reopened += 1
                    conns[i] = self.connect()
        for conn in conns:
            if conn is not None:
                conn[0].close()


def test_slow_headers_cannot_shut_ping_out(tuned_server: Server) -> None:
    workers, threads = threads_of(tuned_server)
    count = workers * threads + 100
    clients = SlowClients(tuned_server, count)
    clients.thread.start()
    probes: list[float] = []
    failures: list[str] = []
    try:
        time.sleep(1.5)  # every connection open and one byte in
        for _ in range(24):  # 12 s of probes, past the header deadline
            start = time.monotonic()
            try:
                status = requests.get(f"{tuned_server.url}/ping", timeout=2).status_code
                elapsed = time.monotonic() - start
                probes.append(elapsed)
                if status != 200 or elapsed > 2:
                    failures.append(f"{status} in {elapsed:.2f}s")
            except requests.RequestException as exc:
                probes.append(float("inf"))
                failures.append(type(exc).__name__)
            time.sleep(max(0.0, 0.5 - (time.monotonic() - start)))
    finally:
        clients.stop.set()
        clients.thread.join(10)
    print(
        f"\n{count} slow connections ({workers} x {threads} threads + 100): {len(probes)} probes, "
        f"max {max(probes):.3f}s, {len(failures)} failed; {clients.reopened} reopened"
    )
    assert not failures, (failures, probes, tuned_server.log()[-3000:])


def test_a_body_shorter_than_its_length_is_answered_408(tuned_server: Server) -> None:
    with socket.create_connection(address(tuned_server)) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1048576\r\n\r\n" + b"\xff" * 10
        )
        answer, closed_after = answer_within(sock, 30)
    print(f"\nContent-Length 1 MiB, 10 bytes sent: {answer[:12]!r} after {closed_after:.2f}s")
    assert closed_after < BODY_TIMEOUT_S + 5
    if answer:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert json.loads(body)["status"] == 408


def test_a_stalled_chunked_body_is_answered_408(tuned_server: Server) -> None:
    with socket.create_connection(address(tuned_server)) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nffffffffff\r\n" + b"\xff" * 10
        )
        answer, closed_after = answer_within(sock, 30)
    print(f"\nchunk size ffffffffff, 10 bytes sent: {answer[:12]!r} after {closed_after:.2f}s")
    assert closed_after < BODY_TIMEOUT_S + 5
    assert not answer or answer.startswith((b"HTTP/1.1 408 ", b"HTTP/1.1 400 ")), answer[:300]


def test_a_stalled_head_is_answered_408(tuned_server: Server) -> None:
    with socket.create_connection(address(tuned_server)) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        answer, closed_after = answer_within(sock, 30)
    print(f"\nhead without its end: {answer[:12]!r} after {closed_after:.2f}s")
    assert closed_after < HEADER_TIMEOUT_S + 3
    assert not answer or answer.startswith(b"HTTP/1.1 408 "), answer[:300]


def test_requests_still_work_after_slow_clients(tuned_server: Server) -> None:
    response = tuned_server.post_jpeg(3, timeout=10)
    assert response.status_code == 200, response.text
    assert requests.get(f"{tuned_server.url}/ping", timeout=2).status_code == 200


def test_a_stopping_worker_does_not_wait_for_unfinished_heads(
    model_dir: Path, tmp_path: Path
) -> None:
    server = start_tuned_server(model_dir, tmp_path)  # production deadlines
    try:
        server.wait_ready()
        with socket.create_connection(address(server)) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.5)
            start = time.monotonic()
            assert server.stop(timeout_s=30) == 0
            stopped_after = time.monotonic() - start
    finally:
        server.stop()
    print(f"\nSIGTERM with an unfinished head open: stopped after {stopped_after:.2f}s")
    assert stopped_after < 5  # not the 10 s head deadline, nor the 25 s grace period
