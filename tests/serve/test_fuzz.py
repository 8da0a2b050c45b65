"""Property-based fuzzing over real HTTP: malformed requests never get a 5xx, no worker dies."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from .conftest import Server, encode, jpeg_bytes, textured_pixels

CLIENT_ERRORS = {400, 404, 405, 406, 413, 415}
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(str.strip)  # what a client library will send
VALID_IMAGES = [
    jpeg_bytes(11),
    encode(Image.fromarray(textured_pixels(30, 20, 12)), "PNG"),
    encode(Image.fromarray(textured_pixels(25, 25, 13)).convert("P"), "GIF"),
    encode(Image.fromarray(textured_pixels(40, 30, 14)).convert("CMYK"), "JPEG"),
    encode(Image.new("1", (8000, 6000)), "PNG"),  # over the server's 40,000,000 pixels
]


@st.composite
def damaged_image(draw: st.DrawFn) -> bytes:
    """A real image truncated, bit-flipped, spliced or with garbage inserted."""
    data = bytearray(draw(st.sampled_from(VALID_IMAGES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "overwrite_header"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "truncate":
            data = data[:position]
        elif op == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:  # clobber dimensions/markers near the start
            data[position % 32 : position % 32 + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
BASE64_ITEMS = st.one_of(
    damaged_image().map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(VALID_IMAGES).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=40),
    JSON_VALUES,
)


def json_body(document: Any) -> bytes:
    return json.dumps(document).encode()


BODIES = st.one_of(
    st.binary(max_size=512),
    damaged_image(),
    st.sampled_from(VALID_IMAGES),
    JSON_VALUES.map(json_body),
    st.lists(BASE64_ITEMS, max_size=4).map(lambda items: json_body({"images": items})),
    st.builds(
        lambda doc, cut: json_body(doc)[:cut],
        st.fixed_dictionaries({"images": st.lists(BASE64_ITEMS, max_size=3)}),
        st.integers(0, 200),
    ),
)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` four times in five, so that most requests reach the image decoder."""
    return st.integers(0, 4).flatmap(lambda n: odd if n == 0 else usual)


CONTENT_TYPES = mostly(
    st.sampled_from(
        ["image/jpeg", "image/png", "application/x-image", "application/json", "IMAGE/JPEG"]
    ),
    st.one_of(
        st.none(),
        st.sampled_from(
            [
                "application/json; charset=utf-8",
                "image/jpeg; q=x",
                "text/plain",
                "multipart/form-data; boundary=x",
                "",
            ]
        ),
        HEADER_TEXT,
    ),
)
ACCEPTS = mostly(
    st.sampled_from([None, "*/*", "application/json"]),
    st.one_of(st.sampled_from(["text/html", "application/json;q=0", "*/*;q=abc"]), HEADER_TEXT),
)
TOP_K = mostly(st.integers(1, 10).map(str), st.one_of(st.integers(-3, 100).map(str), HEADER_TEXT))
ATTRIBUTES = mostly(st.one_of(st.none(), TOP_K.map(lambda k: f"top_k={k}")), HEADER_TEXT)
QUERIES = mostly(
    st.one_of(st.none(), TOP_K.map(lambda k: {"top_k": k})), st.just({"top_k": ["1", "2"]})
)


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        yield client


@pytest.fixture(scope="module")
def pids_before(server: Server) -> set[int]:
    return server.worker_pids()


def assert_clean_answer(response: requests.Response) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or response.status_code in CLIENT_ERRORS, response.text
    body = response.json()
    if response.status_code == 200:
        assert isinstance(body["predictions"], list)
    else:
        assert body["message"], body


@settings(
    max_examples=500,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=BODIES,
    content_type=CONTENT_TYPES,
    accept=ACCEPTS,
    attributes=ATTRIBUTES,
    query=QUERIES,
)
def test_malformed_requests_never_get_a_5xx(
    server: Server,
    session: requests.Session,
    pids_before: set[int],
    body: bytes,
    content_type: str | None,
    accept: str | None,
    attributes: str | None,
    query: dict[str, Any] | None,
) -> None:
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if accept is not None:
        headers["Accept"] = accept
    if attributes is not None:
        headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
    response = session.post(
        f"{server.url}/invocations", data=body, headers=headers, params=query, timeout=30
    )
    event(f"HTTP {response.status_code}")  # the spread shows with --hypothesis-show-statistics
    assert_clean_answer(response)


@settings(max_examples=60, deadline=timedelta(seconds=10), database=None)
@given(
    request_line=st.sampled_from(
        [b"POST /invocations HTTP/1.1", b"GET /ping HTTP/1.1", b"POST /invocations HTTP/1.0"]
    )
    | st.binary(max_size=60),
    headers=st.binary(max_size=200),
    body=st.binary(max_size=100),
)
def test_malformed_http_never_gets_a_5xx(
    server: Server, pids_before: set[int], request_line: bytes, headers: bytes, body: bytes
) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    raw = request_line + b"\r\n" + headers + b"\r\n\r\n" + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    if answer:  # the server may also just close a connection it cannot parse
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1."), answer[:200]
        event(f"HTTP {int(status_line.split()[1])}")
        assert int(status_line.split()[1]) < 500, answer[:300]


def test_workers_survived_the_fuzzing(server: Server, pids_before: set[int]) -> None:
    assert server.worker_pids() == pids_before
    assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
