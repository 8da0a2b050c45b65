"""Issue 21, the small ones: each failed on da1db7c.

- ``top_k`` took ``1_0``, ``+3`` and Arabic-Indic digits (``int()`` accepts them all);
- gunicorn's own 400/414/431 refusals were HTML pages, though every error is to be JSON;
- base64 with line breaks (``base64`` without ``-w0``) was refused;
- a model whose output is NaN was answered 200 with a bare ``NaN``, which is not JSON.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests
import torch

from dogbreed.artifact import ModelSpec, save_artifact
from dogbreed.model import build_model
from dogbreed.serve.app import MODEL_STATE, create_app, json_response
from dogbreed.serve.config import ServerSettings
from dogbreed.serve.runtime import choose_model

from .conftest import CLASS_NAMES, IMAGE_SIZE, Server, jpeg_bytes

ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def invoke(server: Server, body: bytes, content_type: str, **kwargs: object) -> requests.Response:
    return requests.post(
        f"{server.url}/invocations",
        data=body,
        headers={"Content-Type": content_type, **kwargs.pop("headers", {})},  # type: ignore[dict-item]
        timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("value", ["1_0", "+3", "\u0663", "\uff13", "3\u00a0", "0x3", "-0"])
@pytest.mark.parametrize("where", ["query", "header"])
def test_top_k_takes_ascii_digits_only(server: Server, value: str, where: str) -> None:
    if where == "query":
        response = invoke(server, jpeg_bytes(1), "image/jpeg", params={"top_k": value})
    else:
        attributes = f"top_k={value}".encode().decode("latin-1")  # requests sends latin-1
        response = invoke(server, jpeg_bytes(1), "image/jpeg", headers={ATTRIBUTES: attributes})
    assert response.status_code == 400, (value, response.text)
    assert "top_k" in response.json()["message"]


def test_top_k_in_ascii_digits_still_works(server: Server) -> None:
    response = invoke(server, jpeg_bytes(1), "image/jpeg", params={"top_k": "03"})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]) == 3


def raw_exchange(server: Server, request: bytes) -> bytes:
    """Send ``request`` on a fresh connection; everything the server answers before closing."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 150 + b"\r\n", 431),
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
    ],
    ids=["long-request-line", "too-many-headers", "long-header", "bad-request-line", "bad-name"],
)
def test_gunicorn_refusals_are_json(server: Server, request_bytes: bytes, status: int) -> None:
    answer = raw_exchange(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"\r\nContent-Type: application/json\r\n" in head, head
    document = json.loads(body)
    assert document["status"] == status
    assert document["error"] and document["message"], document


def test_base64_with_line_breaks_is_accepted(server: Server) -> None:
    image = jpeg_bytes(4)
    wrapped = base64.encodebytes(image).decode()  # 76-character lines, as `base64` writes
    assert "\n" in wrapped.strip()
    body = json.dumps({"images": [wrapped, "\r\n".join(wrapped.splitlines())]}).encode()
    response = invoke(server, body, "application/json")
    assert response.status_code == 200, response.text
    plain = invoke(server, image, "image/jpeg").json()["predictions"][0]
    for row in response.json()["predictions"]:  # batched, so equal to float32 rounding
        assert [p["class_index"] for p in row] == [p["class_index"] for p in plain]
        assert [p["probability"] for p in row] == pytest.approx(
            [p["probability"] for p in plain], abs=1e-5
        )


@pytest.mark.parametrize("text", ["***", "aGVsbG8=\x00", "aGVs-bG8=", "a", "=\n="])
def test_base64_garbage_is_still_400(server: Server, text: str) -> None:
    body = json.dumps({"images": [text]}).encode()
    response = invoke(server, body, "application/json")
    assert response.status_code == 400, response.text
    assert "images[0]" in response.json()["message"]


def test_json_responses_refuse_nan() -> None:
    with pytest.raises(ValueError):
        json_response({"probability": float("nan")})


def test_a_model_that_outputs_nan_answers_500_json(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(len(CLASS_NAMES))
    with torch.no_grad():
        model.fc.bias.fill_(float("nan"))
    model_dir = tmp_path / "model"
    spec = ModelSpec(
        class_names=CLASS_NAMES,
        image_size=IMAGE_SIZE,
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225],
    )
    save_artifact(model_dir, model, spec)
    settings = ServerSettings.from_env({}, cpus=1, gpus=0)
    settings = settings.for_model(
        model_dir, IMAGE_SIZE, choose_model(model_dir, "torch", "auto", "cpu")
    )
    failed: list[bool] = []
    threads_before = threading.active_count()
    app = create_app(settings, on_load_failure=lambda: failed.append(True))
    state = app.extensions[MODEL_STATE]
    deadline = time.monotonic() + 60
    while state.predictor is None and not failed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.predictor is not None and not failed
    try:
        response = app.test_client().post(
            "/invocations", data=jpeg_bytes(2), content_type="image/jpeg"
        )
    finally:
        state.stop()
        while threading.active_count() > threads_before and time.monotonic() < deadline + 10:
            time.sleep(0.01)  # the loader thread too: test_worker counts threads
    assert response.status_code == 500, response.text
    assert response.mimetype == "application/json"
    document = json.loads(response.text)  # strict: no bare NaN in it
    assert "not a finite number" in document["message"]
