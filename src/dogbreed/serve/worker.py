"""The gunicorn worker: gthread, with request threads from :mod:`.thread_pool`, request heads
that wait in the poller (not on a thread) until complete or late, and bodies admitted against a
budget and read against a deadline (:mod:`.body_deadline`); every refusal in JSON
(:mod:`.error_pages`)."""

from __future__ import annotations

import contextlib
import selectors
import shutil
import socket
import tempfile
import threading
import time
from typing import Any

from gunicorn import util
from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers import gthread
from gunicorn.workers.gthread import ThreadWorker

from dogbreed.serve import tuning
from dogbreed.serve.body_deadline import BodySocket
from dogbreed.serve.error_pages import ErrorPageCapture, json_error_page, json_page_for
from dogbreed.serve.request_body import SPOOL_CHUNK_BYTES, spools
from dogbreed.serve.thread_pool import LifoThreadPool

#: handle()'s answers besides gthread's: headers still incomplete (wait in the poller), and the
#: connection already closed on the request thread (count it gone, close nothing).
_HEAD_PENDING = object()
_CLOSED = object()
#: Bytes of a request head looked at while waiting for it (gunicorn's own limits refuse more).
_PEEK_BYTES = 65536
#: How long a request thread waits for a new connection's first byte before parking it.
_FIRST_BYTE_WAIT_S = 0.05


class PrestartedThreadWorker(ThreadWorker):
    """gunicorn's gthread worker on a :class:`LifoThreadPool`, hardened against slow and greedy
    clients (issue 21); its own refusals (400, 414, 431, 500 ...) answer in JSON like the app's.

    - A request's head waits in the poller, not on a thread, until it is complete; it must be
      complete within ``HEADER_TIMEOUT_S`` of its first byte, else 408 and the connection closes.
      When the worker is at its connection limit the newest connection still waiting for its head
      (or its first byte) is closed to take the next one, so a flood of slow clients cannot keep
      /ping out.
    - A body must arrive within max(``BODY_TIMEOUT_S``, size / ``BODY_MIN_BYTES_PER_S``) of the
      end of its head, else the app answers 408 and the connection closes.
    - Before a body is read: at most ``BODY_THREAD_SHARE`` of the threads wait for bodies still
      arriving, the bodies a worker holds stay within its byte budget, and the bodies it spools
      (:mod:`.request_body`) within its spool budget and TMPDIR's free space; a request over any
      gets 503 + ``Retry-After`` at once.
    """

    def init_process(self) -> None:
        self._head_conns: dict[Any, None] = {}  # waiting for their head, oldest first
        self._last_head_scan = 0.0
        self._budget_lock = threading.Lock()
        self._body_bytes = 0  # bytes reserved for bodies being read or held
        self._spool_bytes = 0  # bytes reserved on disk for bodies being spooled
        self._body_waiters = 0  # threads waiting for a body still arriving
        super().init_process()

    def get_thread_pool(self) -> LifoThreadPool:
        return LifoThreadPool(self.cfg.threads)

    # -- the request head, in the poller ------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        if self.cfg.is_ssl or conn.is_http2:
            return super().handle(conn)
        state = self._head_state(conn)
        if state == "wait":
            if getattr(conn, "head_by", None) is None:
                conn.head_by = time.monotonic() + tuning.HEADER_TIMEOUT_S
            if time.monotonic() >= conn.head_by:
                return self._refuse(conn, 408, "Request Timeout", self._head_late_message())
            return _HEAD_PENDING
        if state == "idle":
            return gthread._DEFER  # gthread parks it until its first byte (keepalive seconds)
        conn.data_ready = True  # the head is here: gthread need not wait for it
        return super().handle(conn)

    def _head_state(self, conn: Any) -> str:
        """``ready`` (a whole head, or something gunicorn must answer), ``wait`` (part of a
        head) or ``idle`` (no byte yet), looking without reading."""
        buffered = conn.parser.unreader.buf.getvalue() if conn.parser is not None else b""
        if b"\r\n\r\n" in buffered or b"\n\n" in buffered:
            return "ready"
        try:
            data = conn.sock.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            data = None
        except OSError:
            return "ready"  # gunicorn meets the error and deals with it
        if data is None and not buffered and not conn.initialized and not conn.data_ready:
            if self._wait_readable(conn.sock, _FIRST_BYTE_WAIT_S):
                return self._head_state(conn)
            return "idle"
        if data == b"":
            return "ready"  # closed: gunicorn sees the end
        head = buffered + (data or b"")
        if not head:
            return "idle"
        if b"\r\n\r\n" in head or b"\n\n" in head or len(head) >= _PEEK_BYTES:
            return "ready"
        return "wait"

    @staticmethod
    def _wait_readable(sock: socket.socket, timeout: float) -> bool:
        with selectors.DefaultSelector() as selector:
            try:
                selector.register(sock, selectors.EVENT_READ)
                return bool(selector.select(timeout))
            except (OSError, ValueError):
                return True

    @staticmethod
    def _head_late_message() -> str:
        return f"the request headers did not arrive within {tuning.HEADER_TIMEOUT_S:g} s"

    def finish_request(self, conn: Any, fs: Any) -> None:
        """On the main thread: park a connection whose head is incomplete until more arrives."""
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if result is _CLOSED:
            self.nr_conns -= 1
            return
        if result is not _HEAD_PENDING:
            super().finish_request(conn, fs)
            return
        if not self.alive:
            self.nr_conns -= 1
            conn.close()
            return
        try:
            conn.sock.setblocking(False)
            conn.timeout = conn.head_by
            self._head_conns[conn] = None
            self.poller.register(conn.sock, selectors.EVENT_READ, self._on_head_readable(conn))
        except Exception:
            self._head_conns.pop(conn, None)
            self.nr_conns -= 1
            conn.close()

    def _on_head_readable(self, conn: Any) -> Any:
        def readable(client: Any) -> None:
            self.poller.unregister(client)
            del self._head_conns[conn]
            self.enqueue_req(conn)

        return readable

    def murder_pending(self) -> None:
        """Close connections whose head is late (scanned at most 4 times a second)."""
        super().murder_pending()
        if not self._accepting and self.alive:  # full since the last check: room for more?
            self._make_room()
        now = time.monotonic()
        if not self.alive:  # stopping: a request not yet whole is not waited for
            for conn in list(self._head_conns):
                self._drop_head_conn(conn, late=False)
            return
        if now - self._last_head_scan < 0.25:
            return
        self._last_head_scan = now
        for conn in [c for c in self._head_conns if c.timeout <= now]:
            self._drop_head_conn(conn, late=True)

    def _drop_head_conn(self, conn: Any, late: bool) -> None:
        del self._head_conns[conn]
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        if late:
            try:
                page = json_error_page(408, "Request Timeout", self._head_late_message())
                util.write_nonblock(conn.sock, page)
            except Exception:
                pass
        conn.close()

    def set_accept_enabled(self, enabled: bool) -> None:
        """At the connection limit, make room (:meth:`_make_room`) rather than stop accepting."""
        if not enabled and self.alive and self._make_room():  # (stopping: stop, as gthread does)
            return
        super().set_accept_enabled(enabled)

    def _make_room(self) -> bool:
        """Below the connection limit again by closing the newest connection still waiting for
        its head, else the oldest still waiting for its first byte; whether that was enough."""
        while self.nr_conns >= self.worker_connections and self._head_conns:
            self._drop_head_conn(next(reversed(self._head_conns)), late=False)
        while self.nr_conns >= self.worker_connections and self.pending_conns:
            conn = self.pending_conns.popleft()
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
        return self.nr_conns < self.worker_connections

    # -- the body, on the request thread -------------------------------------------------------

    def handle_request(self, req: Any, conn: Any) -> Any:
        conn.head_by = None  # the next request's head starts its own clock
        reader = req.body.reader if req.body is not None else None
        if isinstance(reader, LengthReader):
            expected: int | None = reader.length
            size = reader.length
        elif isinstance(reader, ChunkedReader):
            expected, size = None, self._largest_body()
        else:
            expected, size = 0, 0
        if not size:
            return super().handle_request(req, conn)
        arrived = len(conn.parser.unreader.buf.getvalue())
        still_to_come = None if expected is None else max(0, expected - arrived)
        memory, disk = self._body_costs(req, expected, size, still_to_come)
        refusal = self._reserve(memory, disk, waits=still_to_come != 0)
        if refusal is not None:
            return self._refuse(conn, 503, "Service Unavailable", refusal, retry_after=1)
        waiting = [still_to_come != 0]

        def body_in() -> None:
            if waiting[0]:
                waiting[0] = False
                with self._budget_lock:
                    self._body_waiters -= 1

        unreader = conn.parser.unreader
        raw = unreader.sock
        seconds = tuning.BODY_TIMEOUT_S  # chunked: extended as bytes come (BodySocket)
        if expected is not None:
            seconds = max(seconds, size / tuning.BODY_MIN_BYTES_PER_S)
        body_socket = BodySocket(raw, time.monotonic() + seconds, still_to_come, body_in)
        unreader.sock = body_socket
        try:
            keepalive = super().handle_request(req, conn)
        finally:
            unreader.sock = raw
            body_socket.finish()
            with self._budget_lock:
                self._body_bytes -= memory
                self._spool_bytes -= disk
        if body_socket.timed_out:
            self._close_on_thread(conn)
            return _CLOSED
        return keepalive

    @staticmethod
    def _body_costs(
        req: Any, expected: int | None, size: int, still_to_come: int | None
    ) -> tuple[int, int]:
        """The memory and the disk (:mod:`.request_body`) reading a body of ``size`` takes."""
        content_type = next((v for name, v in req.headers if name == "CONTENT-TYPE"), None)
        if spools(content_type, expected):
            overhead = tuning.BODY_READ_OVERHEAD_BYTES + SPOOL_CHUNK_BYTES
            return tuning.SPOOL_ABOVE_BYTES + overhead, size
        held = min(size, tuning.MAX_JSON_BODY_BYTES + 1)  # the most the app reads into memory
        # What reading it takes besides: a recv buffer of up to 1 MiB, while bytes are to come.
        overhead = tuning.BODY_READ_OVERHEAD_BYTES
        return held + min(overhead, held if still_to_come is None else still_to_come), 0

    def _largest_body(self) -> int:
        """A chunked body's reservation: the most the app reads (its MAX_CONTENT_LENGTH)."""
        config = getattr(self.wsgi, "config", None) or {}
        return int(config.get("MAX_CONTENT_LENGTH") or tuning.BODY_BUDGET_BYTES)

    def _reserve(self, memory: int, disk: int, waits: bool) -> str | None:
        """Hold ``memory`` bytes of the body budget, ``disk`` bytes of the spool budget (and a
        body-waiting thread if ``waits``), or say why not."""
        budget = max(
            tuning.BODY_BUDGET_BYTES,
            min(self._largest_body(), tuning.MAX_JSON_BODY_BYTES + 1)
            + tuning.BODY_READ_OVERHEAD_BYTES,
        )
        waiters = max(1, int(self.cfg.threads * tuning.BODY_THREAD_SHARE))
        with self._budget_lock:
            if waits and self._body_waiters >= waiters:
                return (
                    f"{self._body_waiters} requests are already waiting for their bodies, the "
                    "most this worker lets wait: retry later"
                )
            if self._body_bytes + memory > budget:
                return (
                    f"this worker holds {self._body_bytes:,} bytes of request bodies; "
                    f"{memory:,} more would exceed its {budget:,}-byte budget: retry later"
                )
            if disk:
                refusal = self._spool_refusal(disk)
                if refusal is not None:
                    return refusal
            self._body_bytes += memory
            self._spool_bytes += disk
            if waits:
                self._body_waiters += 1
        return None

    def _spool_refusal(self, disk: int) -> str | None:
        """Why a body of ``disk`` bytes cannot be spooled now (None: it can)."""
        if self._spool_bytes + disk > tuning.SPOOL_BUDGET_BYTES:
            return (
                f"this worker is spooling {self._spool_bytes:,} bytes of request bodies to disk; "
                f"{disk:,} more would exceed its {tuning.SPOOL_BUDGET_BYTES:,}-byte spool budget: "
                "retry later"
            )
        directory = tempfile.gettempdir()
        try:
            free = shutil.disk_usage(directory).free
        except OSError as exc:
            return f"cannot spool the request body to {directory} (TMPDIR): {exc}"
        if self._spool_bytes + disk > free:
            return (
                f"{directory} (TMPDIR) has {free:,} bytes free, too few to spool this "
                f"{disk:,}-byte body beside the {self._spool_bytes:,} bytes spooling: retry later"
            )
        return None

    def _keepalive_after(self, conn: Any, keepalive: Any) -> Any:
        if keepalive is _CLOSED:
            return _CLOSED
        return super()._keepalive_after(conn, keepalive)

    def _refuse(
        self, conn: Any, status: int, reason: str, message: str, retry_after: int | None = None
    ) -> Any:
        """Answer ``status`` in JSON and close the connection, here on the request thread."""
        page = json_error_page(status, reason, message)
        if retry_after is not None:
            page = page.replace(b"\r\n\r\n", f"\r\nRetry-After: {retry_after}\r\n\r\n".encode(), 1)
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            conn.sock.sendall(page)
        except OSError:
            pass
        self._close_on_thread(conn)
        return _CLOSED

    @staticmethod
    def _close_on_thread(conn: Any) -> None:
        """Close after letting the client read the answer (the main thread must not linger)."""
        util.close_graceful(conn.sock, timeout=0.5)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's status and message for ``exc`` (and its logging), in the app's JSON."""
        page = ErrorPageCapture()
        super().handle_error(req, page, addr, exc)
        try:
            util.write_nonblock(client, json_page_for(page.data))
        except Exception:
            self.log.debug("Failed to send error message.")
