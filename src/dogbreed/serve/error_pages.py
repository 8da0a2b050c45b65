"""Error responses written below the Flask app (gunicorn's own refusals, the worker's 408/503s),
in the same JSON as the app's errors."""

from __future__ import annotations

import html
import json
import re


class ErrorPageCapture:
    """Stands in for a client socket while gunicorn writes its HTML error page, to keep what it
    says (status, reason, message) and answer the client in JSON instead."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking": util.write_nonblock writes at once

    def sendall(self, data: bytes) -> None:
        self.data += data

    send = sendall


STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ([^\r\n]*)\r\n")
PAGE_MESSAGE = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.S)


def json_error_page(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP response with the app's JSON error body; the connection closes after it."""
    body = json.dumps(
        {"status": status, "error": reason, "message": message or reason}, allow_nan=False
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def json_page_for(gunicorn_page: bytes) -> bytes:
    """gunicorn's HTML error response (status, reason, message) as the app's JSON response."""
    status = STATUS_LINE.match(gunicorn_page)
    if status is None:  # gunicorn wrote nothing we know: a bare 500
        code, reason = 500, "Internal Server Error"
    else:
        code, reason = int(status[1]), status[2].decode("latin-1")
    found = PAGE_MESSAGE.search(gunicorn_page)
    message = html.unescape(found[1].decode("latin-1")) if found else ""
    if code >= 500 and not message:
        message = "internal error"
    return json_error_page(code, reason, message)
