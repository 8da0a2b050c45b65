"""Start-up, readiness and shutdown of a real ``dogbreed-serve`` process."""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from dogbreed.artifact import SPEC_FILE

from .conftest import SERVE_BIN, Server, jpeg_bytes, start_server

CLIENTS_AT_SIGTERM = 6


@pytest.fixture(scope="module")
def slow_to_warm_model_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test model at 1,024 px: its warm-up takes seconds, long enough to watch it load."""
    path = tmp_path_factory.mktemp("large") / "model"
    shutil.copytree(model_dir, path)
    spec = json.loads((path / SPEC_FILE).read_text())
    (path / SPEC_FILE).write_text(json.dumps({**spec, "image_size": 1024}))
    return path


def first_answer(server: Server, timeout_s: float = 60) -> requests.Response:
    """The first /ping a booted worker answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline and server.process.poll() is None, server.log()
        try:
            return requests.get(f"{server.url}/ping", timeout=2)
        except requests.RequestException:
            time.sleep(0.05)


def test_503_until_warm_then_200(slow_to_warm_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(slow_to_warm_model_dir, tmp_path, MODEL_SERVER_WORKERS="2")
    try:
        ping = first_answer(server)
        assert ping.status_code == 503, server.log()
        assert ping.json() == {"status": "loading"}
        early = server.post_jpeg(0, timeout=10)
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
    finally:
        server.stop()


def test_sigterm_answers_every_in_flight_request_then_ends_the_inference_threads(
    model_dir: Path, tmp_path: Path
) -> None:
    server = start_server(model_dir, tmp_path, MODEL_SERVER_WORKERS="2")
    try:
        server.wait_ready()
        # Requests long enough to be in flight, most of them queued, when SIGTERM arrives.
        images = [base64.b64encode(jpeg_bytes(seed, size=(160, 120))).decode() for seed in range(8)]
        body = json.dumps({"images": images * 16})
        answers: list[tuple[float, requests.Response]] = []

        def send() -> None:
            response = requests.post(
                f"{server.url}/invocations",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            answers.append((time.monotonic(), response))

        senders = [threading.Thread(target=send) for _ in range(CLIENTS_AT_SIGTERM)]
        for sender in senders:
            sender.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        terminated = time.monotonic()
        for sender in senders:
            sender.join(60)
        assert len(answers) == CLIENTS_AT_SIGTERM
        assert all(at > terminated for at, _ in answers), "requests ended before SIGTERM"
        for _, response in answers:
            assert response.status_code == 200, response.text
            assert len(response.json()["predictions"]) == 128
        assert server.process.wait(30) == 0
        stopped = re.findall(r"inference thread stopped after \d+ batches", server.log())
        assert len(stopped) == 2, server.log()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/ping", timeout=2)
    finally:
        server.stop()


def test_a_removed_variable_is_named_in_one_warning_and_the_server_serves(
    model_dir: Path, tmp_path: Path
) -> None:
    server = start_server(
        model_dir, tmp_path, MODEL_SERVER_WORKERS="2", DOGBREED_MAX_BATCH_WAIT_MS="2"
    )
    try:
        server.wait_ready()
        response = server.post_jpeg(3)
        assert response.status_code == 200, response.text
        warnings = re.findall(r"WARNING DOGBREED_MAX_BATCH_WAIT_MS is no longer read", server.log())
        assert len(warnings) == 1, server.log()  # from the master, not once per worker
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


def test_serves_a_model_tarball(model_dir: Path, tmp_path: Path) -> None:
    import tarfile

    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    server = start_server(tarball, tmp_path)
    try:
        server.wait_ready()
        response = server.post_jpeg(1, **{"X-Amzn-SageMaker-Custom-Attributes": "top_k=2"})
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
