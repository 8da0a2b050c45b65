"""The server over real HTTP: a real gunicorn process on 127.0.0.1, requests as clients send them.

Every test runs against both runtimes: the torch server and the slim one (ONNX Runtime, int8, in a
venv without torch). Each is held to its own in-process reference: torch's to the training job's
evaluation, the slim server's to the same int8 model run in process on the same files.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from PIL import Image

from dogbreed.artifact import load_artifact
from dogbreed.imaging import eval_resize_size
from dogbreed.serve.config import cpu_batch_size
from dogbreed.train.dataset import ImageDataset
from dogbreed.train.presets import eval_transform

from .conftest import (
    CLASS_NAMES,
    IMAGE_SIZE,
    SLIM_SERVE_BIN,
    Server,
    encode,
    jpeg_bytes,
    slim_in_process_probabilities,
    start_server,
)

MIB = 1024 * 1024
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def invoke(
    server: Server,
    body: bytes,
    content_type: str | None = "image/jpeg",
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> requests.Response:
    all_headers = {"Content-Type": content_type} if content_type else {}
    all_headers.update(headers or {})
    return requests.post(
        f"{server.url}/invocations", data=body, headers=all_headers, params=params, timeout=60
    )


def assert_error(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]


RUNTIMES = ("torch", "onnx-int8")
Reference = Callable[[Path], np.ndarray]


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(runtime: str, request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue("torch_server" if runtime == "torch" else "slim_server")


@pytest.fixture
def reference(runtime: str, request: pytest.FixtureRequest) -> Reference:
    """The served runtime's probabilities for an image file, computed in process."""
    if runtime == "torch":
        model_dir = request.getfixturevalue("model_dir")
        return lambda path: in_process_probabilities(model_dir, path)
    onnx_dir = request.getfixturevalue("onnx_model_dir")
    return lambda path: slim_in_process_probabilities(onnx_dir, "model.int8.onnx", [path])[path]


def in_process_probabilities(model_dir: Path, path: Path) -> np.ndarray:
    """The reference: the artifact and the training job's eval dataset, no server code involved."""
    model, spec = load_artifact(model_dir)
    transform = eval_transform(spec.image_size, spec.mean, spec.std)
    tensor, _ = ImageDataset([(path, 0)], transform, eval_resize_size(spec.image_size))[0]
    with torch.inference_mode():
        return torch.softmax(model(tensor.unsqueeze(0)), dim=1)[0].numpy()


def as_vector(predictions: list[dict]) -> np.ndarray:
    """A full top-k list (k = all classes) back into a probability vector by class index."""
    vector = np.zeros(len(CLASS_NAMES), dtype=np.float32)
    for p in predictions:
        assert p["label"] == CLASS_NAMES[p["class_index"]]
        vector[p["class_index"]] = p["probability"]
    return vector


def test_ping_answers_ready(server: Server) -> None:
    response = requests.get(f"{server.url}/ping", timeout=2)
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
    assert response.elapsed.total_seconds() < 0.5


@pytest.mark.parametrize(
    "name",
    [
        "rgb.jpg",
        "exif_rotated.jpg",
        "gray.jpg",
        "cmyk.jpg",
        "rgb.png",
        "rgba.png",
        "palette.png",
        "palette_transparent.gif",
        "gray16.png",
        "la.png",
        "rgb.webp",
        "large_rgb.jpg",
        "large_exif_rotated.jpg",
        "large_gray.jpg",
        "large_cmyk.jpg",
    ],
)
def test_every_image_mode_and_format_matches_in_process_prediction(
    server: Server, reference: Reference, image_files: dict[str, Path], name: str
) -> None:
    data = image_files[name].read_bytes()
    content_type = "image/png" if name.endswith(".png") else "application/x-image"
    response = invoke(server, data, content_type, params={"top_k": str(len(CLASS_NAMES))})
    assert response.status_code == 200, response.text
    (predictions,) = response.json()["predictions"]
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    expected = reference(image_files[name])
    np.testing.assert_allclose(as_vector(predictions), expected, atol=1e-5, rtol=1e-4)


def test_exif_orientation_is_applied(
    server: Server, reference: Reference, image_files: dict[str, Path], tmp_path: Path
) -> None:
    response = invoke(server, image_files["exif_rotated.jpg"].read_bytes(), params={"top_k": "5"})
    served = as_vector(response.json()["predictions"][0])
    pixels = Image.open(image_files["rgb.jpg"])  # same pixels, no orientation tag
    pixels.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "upright.png")
    upright = reference(tmp_path / "upright.png")
    sideways = reference(image_files["rgb.jpg"])
    np.testing.assert_allclose(served, upright, atol=1e-5, rtol=1e-4)
    assert not np.allclose(served, sideways, atol=1e-4)


def test_json_carries_several_images_in_order(server: Server) -> None:
    images = [jpeg_bytes(seed) for seed in range(5)]
    body = json.dumps({"images": [base64.b64encode(b).decode() for b in images]})
    response = invoke(server, body.encode(), "application/json", params={"top_k": "5"})
    assert response.status_code == 200, response.text
    together = response.json()["predictions"]
    assert len(together) == 5
    for data, row in zip(images, together, strict=True):
        alone = invoke(server, data, params={"top_k": "5"}).json()["predictions"][0]
        np.testing.assert_allclose(as_vector(row), as_vector(alone), atol=1e-5, rtol=1e-4)


def test_json_accepts_data_urls(server: Server) -> None:
    url = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(3)).decode()
    response = invoke(server, json.dumps({"images": [url]}).encode(), "application/json")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("headers", "params", "expected"),
    [
        ({}, {}, 5),  # the default (5) bounded by the 5 classes
        ({ATTRIBUTES: "top_k=3"}, {}, 3),
        ({ATTRIBUTES: "trace=abc,top_k=2;x=1"}, {}, 2),
        ({}, {"top_k": "1"}, 1),
        ({ATTRIBUTES: "top_k=2"}, {"top_k": "2"}, 2),
        ({}, {"top_k": "1000"}, 5),  # bounded by the number of classes
    ],
)
def test_top_k_from_header_or_query(
    server: Server, headers: dict[str, str], params: dict[str, str], expected: int
) -> None:
    response = invoke(server, jpeg_bytes(1), headers=headers, params=params)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]) == expected


@pytest.mark.parametrize(
    ("headers", "params", "words"),
    [
        ({ATTRIBUTES: "top_k=0"}, {}, (">= 1",)),
        ({ATTRIBUTES: "top_k=abc"}, {}, ("top_k", "abc")),
        ({}, {"top_k": "-2"}, (">= 1",)),
        ({}, {"top_k": "2.5"}, ("positive integer",)),
        ({}, {"top_k": ""}, ("positive integer",)),
        ({ATTRIBUTES: "top_k=1"}, {"top_k": "3"}, ("conflicting",)),
    ],
)
def test_bad_top_k_is_400(
    server: Server, headers: dict[str, str], params: dict[str, str], words: tuple[str, ...]
) -> None:
    assert_error(invoke(server, jpeg_bytes(1), headers=headers, params=params), 400, *words)


def test_custom_attributes_are_echoed(server: Server) -> None:
    attributes = "top_k=1,request_id=42"
    ok = invoke(server, jpeg_bytes(2), headers={ATTRIBUTES: attributes})
    assert ok.headers[ATTRIBUTES] == attributes
    bad = invoke(server, b"", headers={ATTRIBUTES: attributes})
    assert bad.headers[ATTRIBUTES] == attributes


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "application/*", "text/html, */*;q=0.1"]
)
def test_json_compatible_accept_headers_are_served(server: Server, accept: str) -> None:
    assert invoke(server, jpeg_bytes(4), headers={"Accept": accept}).status_code == 200


@pytest.mark.parametrize("accept", ["text/html", "image/png", "text/csv, application/xml"])
def test_unsupported_accept_is_406(server: Server, accept: str) -> None:
    assert_error(invoke(server, jpeg_bytes(4), headers={"Accept": accept}), 406, accept)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/octet-stream", "image/gif", None]
)
def test_unsupported_content_type_is_415(server: Server, content_type: str | None) -> None:
    response = invoke(server, jpeg_bytes(5), content_type)
    assert_error(response, 415, "content-type", "image/jpeg")


def test_truncated_jpeg_is_400(server: Server) -> None:
    data = jpeg_bytes(6, size=(200, 160))
    assert_error(invoke(server, data[: len(data) // 2]), 400, "truncated")


@pytest.mark.parametrize(
    ("body", "content_type", "words"),
    [
        (b"", "image/jpeg", ("empty",)),
        (b"definitely not an image", "image/png", ("not a decodable image",)),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg", ("image",)),
        (b"", "application/json", ("empty",)),
        (b"{not json", "application/json", ("not valid json",)),
        (b"[" * 100_000, "application/json", ("not valid json",)),
        (b"\xff\xfe{", "application/json", ("not valid json",)),
        (b'["a"]', "application/json", ('"images"',)),
        (b'{"instances": []}', "application/json", ('"images"',)),
        (b'{"images": []}', "application/json", ("non-empty",)),
        (b'{"images": "abc"}', "application/json", ("non-empty list",)),
        (b'{"images": [42]}', "application/json", ("images[0]", "base64 string")),
        (b'{"images": ["***"]}', "application/json", ("images[0]", "not valid base64")),
        (b'{"images": [""]}', "application/json", ("images[0]", "empty")),
        (b'{"images": ["aGVsbG8="]}', "application/json", ("images[0]", "not a decodable image")),
    ],
)
def test_bad_bodies_are_400_and_name_the_problem(
    server: Server, body: bytes, content_type: str, words: tuple[str, ...]
) -> None:
    assert_error(invoke(server, body, content_type), 400, *words)


def test_bad_image_inside_json_is_named_by_position(server: Server) -> None:
    good = base64.b64encode(jpeg_bytes(1)).decode()
    bad = base64.b64encode(b"GIF89a broken").decode()
    response = invoke(server, json.dumps({"images": [good, bad]}).encode(), "application/json")
    assert_error(response, 400, "images[1]")


def test_body_over_the_limit_is_413(server: Server) -> None:
    assert_error(invoke(server, b"\xff" * (MIB + 1)), 413, "1,048,576-byte limit")


def test_chunked_body_over_the_limit_is_413(server: Server) -> None:
    chunks = (b"\xff" * 65536 for _ in range(20))  # no Content-Length: chunked transfer
    assert_error(invoke(server, chunks), 413, "limit")  # type: ignore[arg-type]


def test_too_many_images_in_one_request_is_413(server: Server) -> None:
    tiny = base64.b64encode(encode(Image.new("RGB", (1, 1)), "PNG")).decode()
    body = json.dumps({"images": [tiny] * 257}).encode()
    assert_error(invoke(server, body, "application/json"), 413, "257 images", "256")


def test_decompression_bomb_is_refused_by_pixel_count(server: Server) -> None:
    # The server allows 40,000,000 pixels; this PNG declares 8,000x6,000 in a few KB.
    bomb = encode(Image.new("1", (8000, 6000)), "PNG")
    assert len(bomb) < 100_000
    assert_error(invoke(server, bomb, "image/png"), 413, "48,000,000 pixels", "40,000,000")
    huge = encode(Image.new("1", (10000, 9000)), "PNG")  # past PIL's own 2x bomb limit
    assert_error(invoke(server, huge, "image/png"), 413, "decompression bomb")


def test_extreme_aspect_ratio_is_refused(server: Server) -> None:
    strip = encode(Image.new("RGB", (1, 8000)), "PNG")  # 73 x 584,000 once resized: > 40 MP
    assert_error(invoke(server, strip, "image/png"), 400, "aspect ratio")


def test_unknown_routes_and_methods_answer_json(server: Server) -> None:
    assert_error(requests.get(f"{server.url}/nope", timeout=5), 404)
    assert_error(requests.get(f"{server.url}/invocations", timeout=5), 405)


def test_execution_parameters_match_the_server_limits(server: Server) -> None:
    response = requests.get(f"{server.url}/execution-parameters", timeout=5)
    assert response.status_code == 200
    # 2 workers x max(8, the batch resolved for the model); payload limit set to 1 MB here.
    assert response.json() == {
        "MaxConcurrentTransforms": 2 * max(8, cpu_batch_size(IMAGE_SIZE)),
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 1,
    }


def test_the_workers_batch_is_the_one_the_master_resolved(server: Server) -> None:
    batch = f"batches of up to {cpu_batch_size(IMAGE_SIZE)}"
    log = server.log().splitlines()
    master = [line for line in log if "compute threads each" in line]
    workers = [line for line in log if "ready:" in line]
    assert len(master) == 1 and batch in master[0], master
    assert workers and all(batch in line for line in workers), workers


def test_the_server_logs_the_model_and_runtime_it_serves(server: Server, runtime: str) -> None:
    expected = "torch" if runtime == "torch" else "onnxruntime"
    served = "(model.pt)" if runtime == "torch" else "int8 (model.int8.onnx)"
    ready = [line for line in server.log().splitlines() if "ready:" in line]
    assert ready and all(expected in line and served in line for line in ready), ready


def test_slim_fp32_serves_the_training_jobs_evaluation(
    onnx_model_dir: Path, model_dir: Path, image_files: dict[str, Path], tmp_path: Path
) -> None:
    """DOGBREED_PRECISION=fp32: model.onnx, within 1e-4 of torch's evaluation on every case."""
    srv = start_server(
        onnx_model_dir, tmp_path, serve_bin=SLIM_SERVE_BIN, DOGBREED_PRECISION="fp32"
    )
    try:
        srv.wait_ready()
        assert "fp32 (model.onnx)" in srv.log()
        for name, path in image_files.items():
            response = invoke(srv, path.read_bytes(), "application/x-image", params={"top_k": "5"})
            assert response.status_code == 200, (name, response.text)
            served = as_vector(response.json()["predictions"][0])
            expected = in_process_probabilities(model_dir, path)
            np.testing.assert_allclose(served, expected, atol=1e-4, rtol=0, err_msg=name)
    finally:
        srv.stop()
