"""The server's allocator: tcmalloc preloaded into the master and its workers, or glibc's on request."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dogbreed.serve import allocator
from dogbreed.serve.allocator import AllocatorError, allocator_in_use, preload_for

from .conftest import SERVE_BIN, Server, start_server

needs_tcmalloc = pytest.mark.skipif(
    allocator.tcmalloc_library() is None and os.environ.get("CI") != "true",
    reason="tcmalloc not installed (apt-get install libtcmalloc-minimal4); CI installs it",
)


@needs_tcmalloc
def test_master_and_workers_run_on_tcmalloc(server: Server) -> None:
    pids = {server.process.pid, *server.worker_pids()}
    assert len(pids) == 3
    assert {allocator_in_use(pid) for pid in pids} == {"tcmalloc"}
    assert "memory allocator: tcmalloc" in server.log()


def test_system_allocator_on_request(model_dir: Path, tmp_path: Path) -> None:
    server = start_server(model_dir, tmp_path, DOGBREED_MALLOC="system", MODEL_SERVER_WORKERS="1")
    try:
        server.wait_ready()
        assert {allocator_in_use(pid) for pid in server.worker_pids()} == {"glibc malloc"}
    finally:
        assert server.stop() == 0


def test_bad_allocator_choice_is_refused_before_starting(model_dir: Path) -> None:
    env = {**os.environ, "SM_MODEL_DIR": str(model_dir), "DOGBREED_MALLOC": "jemalloc"}
    result = subprocess.run(
        [str(SERVE_BIN), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "DOGBREED_MALLOC must be one of auto, tcmalloc, system, got 'jemalloc'" in result.stderr


def test_tcmalloc_demanded_but_missing_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "tcmalloc_library", lambda: None)
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4"):
        preload_for({"DOGBREED_MALLOC": "tcmalloc"})
    assert preload_for({}) is None  # auto: runs on glibc's malloc instead


def test_no_second_preload() -> None:
    assert preload_for({"LD_PRELOAD": "libtcmalloc_minimal.so.4"}) is None
    assert preload_for({"DOGBREED_MALLOC": "system"}) is None
