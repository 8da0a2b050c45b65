"""Shedding over real HTTP: a request that would wait too long gets 503 + Retry-After at once."""

from __future__ import annotations

import threading
from pathlib import Path

import requests

from .conftest import jpeg_bytes, start_server

CLIENTS = 16


def test_requests_over_the_queue_wait_limit_are_shed_at_once_with_retry_after(
    model_dir: Path, tmp_path: Path
) -> None:
    # A 1 ms limit: a request that finds any image ahead of it is shed.
    server = start_server(
        model_dir, tmp_path, MODEL_SERVER_WORKERS="1", DOGBREED_MAX_QUEUE_WAIT_S="0.001"
    )
    body = jpeg_bytes(5, size=(160, 120))
    start = threading.Barrier(CLIENTS)
    answers: list[requests.Response] = []

    def client() -> None:
        start.wait(10)
        answers.append(
            requests.post(
                f"{server.url}/invocations",
                data=body,
                headers={"Content-Type": "image/jpeg"},
                timeout=60,
            )
        )

    try:
        server.wait_ready()
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert requests.get(f"{server.url}/ping", timeout=2).status_code == 200
    finally:
        server.stop()
    statuses = sorted(answer.status_code for answer in answers)
    assert len(statuses) == CLIENTS and set(statuses) == {200, 503}, statuses
    for shed in (answer for answer in answers if answer.status_code == 503):
        assert int(shed.headers["Retry-After"]) >= 1
        assert "retry later" in shed.json()["message"]
        assert shed.elapsed.total_seconds() < 1.0
