"""Start-up, readiness and shutdown of a real ``dogbreed-serve`` process."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from .conftest import SERVE_BIN, jpeg_bytes, start_server


def test_503_until_warm_then_200_and_sigterm_drains_in_flight_requests(
    model_dir: Path, tmp_path: Path
) -> None:
    # Many warm-up batches keep the workers "loading" long enough to observe it.
    server = start_server(
        model_dir, tmp_path, DOGBREED_WARMUP_ROUNDS="20", MODEL_SERVER_WORKERS="2"
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # first answer from a booted worker
            assert time.monotonic() < deadline and server.process.poll() is None, server.log()
            try:
                ping = requests.get(f"{server.url}/ping", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.05)
        assert ping.status_code == 503, server.log()
        assert ping.json() == {"status": "loading"}
        early = requests.post(
            f"{server.url}/invocations",
            data=jpeg_bytes(0),
            headers={"Content-Type": "image/jpeg"},
            timeout=10,
        )
        assert early.status_code == 503
        assert "still loading" in early.json()["message"]
        assert "warm-up done" not in server.log()

        server.wait_ready()
        # 200 means every worker is ready, whichever one answered.
        assert len(re.findall(r"worker \d+ ready", server.log())) == 2, server.log()
        assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200

        # Default payload limit: 6 MB.
        too_big = requests.post(
            f"{server.url}/invocations",
            data=b"\0" * (6 * 1024 * 1024 + 1),
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert too_big.status_code == 413
        assert "6,291,456-byte limit" in too_big.json()["message"]

        # A request long enough to be in flight when SIGTERM arrives (256 images).
        images = [base64.b64encode(jpeg_bytes(seed, size=(160, 120))).decode() for seed in range(8)]
        body = json.dumps({"images": images * 32})
        result: dict[str, requests.Response] = {}

        def send() -> None:
            result["response"] = requests.post(
                f"{server.url}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            finished.append(time.monotonic())

        finished: list[float] = []

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        sender.join(60)
        assert finished[0] > terminated, "the request ended before SIGTERM: make it longer"
        response = result["response"]
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 256
        assert server.process.wait(30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/ping", timeout=2)
    finally:
        server.stop()


def test_missing_model_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SERVE_BIN), "--model-dir", str(tmp_path), "--host", "127.0.0.1", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"no model.json in {tmp_path}" in result.stderr


def test_bad_environment_fails_fast(model_dir: Path) -> None:
    result = subprocess.run(
        [str(SERVE_BIN), "--model-dir", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MODEL_SERVER_WORKERS": "lots", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "MODEL_SERVER_WORKERS must be an integer, got 'lots'" in result.stderr


def test_weights_that_do_not_fit_stop_the_server(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "model.json").write_text((model_dir / "model.json").read_text())
    (broken / "model.pt").write_bytes(b"not a torch file")
    server = start_server(broken, tmp_path)
    try:
        assert server.process.wait(60) == 3  # gunicorn halts on a worker boot error
        assert "cannot load the model" in server.log()
        assert "model.pt" in server.log()
    finally:
        server.stop()


def test_serves_a_model_tarball_preprocessing_on_request_threads(
    model_dir: Path, tmp_path: Path
) -> None:
    import tarfile

    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    server = start_server(tarball, tmp_path, DOGBREED_PREPROCESS_ON="request-threads")
    try:
        server.wait_ready()
        response = requests.post(
            f"{server.url}/invocations",
            data=jpeg_bytes(1),
            headers={"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "top_k=2"},
            timeout=30,
        )
        assert response.status_code == 200
        assert len(response.json()["predictions"][0]) == 2
        whole = jpeg_bytes(1, size=(200, 160))
        broken = requests.post(
            f"{server.url}/invocations",
            data=whole[: len(whole) // 2],
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert broken.status_code == 400
        assert "truncated" in broken.json()["message"]
    finally:
        server.stop()


def test_a_low_open_file_limit_gives_fewer_threads_not_a_dying_worker(
    model_dir: Path, tmp_path: Path
) -> None:
    import resource

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 1024))

    server = start_server(model_dir, tmp_path, preexec_fn=low_limit)
    try:
        server.wait_ready()  # the worker booted and serves /ping
        assert "open files are limited to 1024: 384 threads per worker" in server.log()
        assert "x 384 threads" in server.log()
    finally:
        server.stop()
