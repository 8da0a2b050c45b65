"""A server started on a model.tar.gz extracts it once, in its master, and removes the folder when
it stops; a worker that ends (and is replaced) leaves it to the master (issue 23, finding 1)."""

from __future__ import annotations

import os
import signal
import tarfile
import time
from pathlib import Path

from .conftest import start_server


def extractions(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("dogbreed-model-"))


def test_a_server_on_a_tarball_leaves_no_extraction_behind(model_dir: Path, tmp_path: Path):
    """da1db7c left one dogbreed-model-* folder (the whole model, 43 MB) per start."""
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=f"./{path.name}")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = start_server(tarball, tmp_path, MODEL_SERVER_WORKERS="1", TMPDIR=str(tmp))
    try:
        server.wait_ready()
        assert len(extractions(tmp)) == 1
        (first,) = server.worker_pids()
        os.kill(first, signal.SIGTERM)  # it ends through sys.exit, running the atexit handlers
        deadline = time.monotonic() + 60
        while server.worker_pids() in (set(), {first}) and time.monotonic() < deadline:
            time.sleep(0.1)
        server.wait_ready()  # the new worker loaded the model from the master's folder
        assert server.post_jpeg(1).status_code == 200
        assert len(extractions(tmp)) == 1
    finally:
        assert server.stop() == 0, server.log()
    assert extractions(tmp) == [], server.log()
