"""Helpers for the end-to-end tests (imported by conftest.py and the test modules).

conftest.py puts this folder on ``sys.path``, so tests import it as ``e2e_support``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
#: Figures tests measure; conftest prints them in the terminal summary.
FIGURES: dict[str, str] = {}

HYPERPARAMETERS = {  # strings, as SageMaker writes them
    "epochs": "2",
    "batch-size": "8",
    "lr": "0.01",
    "image-size": "64",
    "pretrained": "false",
    "workers": "0",
    "seed": "0",
}


def unavailable(reason: str) -> None:
    """Skip, or fail under CI where the e2e tests must run."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def run(cmd: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, expect: int = 200) -> float:
    """Poll ``url`` until it answers ``expect``; return the seconds it took."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == expect:
                    return time.monotonic() - start
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout:.0f} s (last: {last})")


def image_size_gb(image: str) -> float:
    out = run(["docker", "image", "inspect", "--format", "{{.Size}}", image])
    return int(out.stdout.strip()) / 1e9


def make_opt_ml(
    root: Path, channels: dict[str, Path], hyperparameters: dict[str, str] | None = None
) -> Path:
    """An /opt/ml tree exactly as SageMaker lays it out, with ``channels`` copied in."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    params = HYPERPARAMETERS if hyperparameters is None else hyperparameters
    (config / "hyperparameters.json").write_text(json.dumps(params))
    channel_config = {
        name: {
            "ContentType": "application/x-image",
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in channels
    }
    (config / "inputdataconfig.json").write_text(json.dumps(channel_config))
    group = {
        "instance_group_name": "homogeneousCluster",
        "instance_type": "ml.m5.xlarge",
        "hosts": ["algo-1"],
    }
    resources = {
        "current_host": "algo-1",
        "current_instance_type": "ml.m5.xlarge",
        "current_group_name": "homogeneousCluster",
        "hosts": ["algo-1"],
        "instance_groups": [group],
        "network_interface_name": "eth0",
    }
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    for name, source in channels.items():
        shutil.copytree(source, root / "input" / "data" / name)
    for sub in ("model", "output", "code", "checkpoints"):
        (root / sub).mkdir(exist_ok=True)
    return root


@dataclass(frozen=True)
class TrainingRun:
    opt_ml: Path
    returncode: int
    log: str
    seconds: float

    @property
    def model_dir(self) -> Path:
        return self.opt_ml / "model"


def run_training(image: str, opt_ml: Path, timeout: float = 900) -> TrainingRun:
    """``docker run <image> train`` on ``opt_ml``: no network, host name algo-1, as SageMaker,
    and Docker's defaults otherwise (64 MB of /dev/shm: what a user's plain ``docker run`` gets)."""
    cmd = ["docker", "run", "--rm", "--network", "none", "--hostname", "algo-1"]
    cmd += ["-v", f"{opt_ml}:/opt/ml", image, "train"]
    start = time.monotonic()
    result = run(cmd, timeout=timeout)
    seconds = time.monotonic() - start
    return TrainingRun(opt_ml, result.returncode, result.stdout + result.stderr, seconds)


class Container:
    """A detached ``docker run``; removed on exit, its logs kept in :attr:`logs`."""

    def __init__(self, args: list[str]) -> None:
        self.name = f"dogbreed-e2e-{os.getpid()}-{time.monotonic_ns()}"
        self.args = args
        self.logs = ""

    def __enter__(self) -> Container:
        result = run(["docker", "run", "-d", "--name", self.name, *self.args], timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"docker run failed: {result.stderr.strip()}")
        return self

    def running(self) -> bool:
        state = run(["docker", "inspect", "--format", "{{.State.Running}}", self.name])
        return state.stdout.strip() == "true"

    def read_logs(self) -> str:
        result = run(["docker", "logs", self.name])
        self.logs = result.stdout + result.stderr
        return self.logs

    def __exit__(self, *exc: object) -> None:
        self.read_logs()
        run(["docker", "rm", "-f", self.name], timeout=120)
