"""A 2,000-request soak over keep-alive connections: every answer right, worker memory bounded.

Both runtimes: the torch server and the slim one (ONNX Runtime, int8)."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import Server, jpeg_bytes

REQUESTS = 2000
CLIENTS = 4
#: Allowed RSS growth per worker after warm-up: leaks of even 10 KB a request would show (20 MB).
MAX_GROWTH_BYTES = 20 * 1024 * 1024


@pytest.mark.parametrize("runtime", ["torch", "onnx-int8"])
def test_soak_2000_requests_keeps_memory_bounded(
    runtime: str, request: pytest.FixtureRequest
) -> None:
    server: Server = request.getfixturevalue(
        "torch_server" if runtime == "torch" else "slim_server"
    )
    images = [jpeg_bytes(seed, size=(64 + seed % 5 * 16, 48 + seed % 3 * 16)) for seed in range(16)]
    batch = json.dumps({"images": [base64.b64encode(i).decode() for i in images[:4]]}).encode()
    requests_ = [
        (batch, "application/json") if n % 10 == 0 else (images[n % len(images)], "image/jpeg")
        for n in range(REQUESTS)
    ]

    def client(share: list[tuple[bytes, str]]) -> list[int]:
        with requests.Session() as session:
            return [
                session.post(
                    f"{server.url}/invocations",
                    data=body,
                    headers={"Content-Type": kind},
                    timeout=60,
                ).status_code
                for body, kind in share
            ]

    def run(work: list[tuple[bytes, str]]) -> list[int]:
        with ThreadPoolExecutor(CLIENTS) as pool:
            shares = [work[i::CLIENTS] for i in range(CLIENTS)]
            return [code for codes in pool.map(client, shares) for code in codes]

    assert set(run(requests_[:200])) == {200}  # warm-up: allocator pools reach steady state
    before = server.worker_rss()
    statuses = run(requests_)
    after = server.worker_rss()
    assert statuses.count(200) == REQUESTS
    assert after.keys() == before.keys(), "a worker was replaced during the soak"
    growth = {pid: after[pid] - before[pid] for pid in before}
    print(
        "\nsoak RSS per worker (MiB) before -> after: "
        + ", ".join(
            f"{pid}: {before[pid] / 2**20:.1f} -> {after[pid] / 2**20:.1f}" for pid in before
        )
    )
    assert max(growth.values()) < MAX_GROWTH_BYTES, growth
