"""A real server with some of :mod:`dogbreed.serve.tuning`'s constants changed, to test in
seconds what takes minutes at their production values."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from .conftest import Server, free_port

#: Patches ``dogbreed.serve.tuning`` (NAME=value arguments), then runs the server as
#: ``dogbreed-serve serve`` would (``DOGBREED_MALLOC=system``: no re-execution to lose them).
LAUNCH = """
import sys
from dogbreed.serve import tuning
for item in sys.argv[1:]:
    name, value = item.split("=")
    setattr(tuning, name, type(getattr(tuning, name, 0.0))(float(value)))
from dogbreed.serve.server import main
sys.exit(main(["serve", "--host", "127.0.0.1"]))
"""
#: A hard open-files limit of 288 gives each worker (288 - 256) / 2 = 16 threads
#: (server.fit_open_file_limit): the way to run a worker with few threads.
OPEN_FILES_FOR_16_THREADS = 288


def start_tuned_server(
    model_dir: Path,
    log_dir: Path,
    python: str = sys.executable,
    open_files: int | None = None,
    env: dict[str, str] | None = None,
    **tuned: float,
) -> Server:
    """A real server, one worker, with ``tuned`` constants of :mod:`dogbreed.serve.tuning` (and
    ``env`` added to its environment)."""
    port = free_port()
    env = {
        **os.environ,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(model_dir),
        "MODEL_SERVER_WORKERS": "1",
        "DOGBREED_MALLOC": "system",
        **(env or {}),
    }

    def limit_open_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    log_path = log_dir / f"server-{port}.log"
    args = [f"{name}={value}" for name, value in tuned.items()]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [python, "-c", LAUNCH, *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_open_files,
        )
    return Server(process, f"http://127.0.0.1:{port}", log_path)
