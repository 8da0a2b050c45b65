"""Fixtures for the training job: an /opt/ml tree and the toolkit's real ``train`` entry."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from dogbreed.train.sample_data import write_sample

TRAIN = str(Path(sys.executable).with_name("train"))
# Small and fast: 64 px images, tiny batches, a couple of epochs, no ONNX export
# (tests/train/test_export.py turns it on).
FAST = {
    "image-size": "64",
    "batch-size": "8",
    "epochs": "2",
    "pretrained": "false",
    "lr": "0.01",
    "export": "false",
}


@dataclass
class Job:
    """One /opt/ml tree and how to run the toolkit's ``train`` on it."""

    base: Path

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def checkpoints(self) -> Path:
        return self.base / "checkpoints"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
        env.update(
            SAGEMAKER_BASE_DIR=str(self.base),
            SAGEMAKER_TRAINING_MODULE="dogbreed.train.toolkit:train",
            OMP_NUM_THREADS="1",
        )
        env.update(extra)
        return env

    def popen(self, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [TRAIN],
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        """Run to completion; ``stdout`` holds stdout and stderr interleaved, as a job log."""
        return subprocess.run(
            [TRAIN],
            env=self.env(**extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )

    def add_channel(self, name: str) -> Path:
        """Create ``input/data/<name>`` and declare it in inputdataconfig.json."""
        config = self.base / "input" / "config" / "inputdataconfig.json"
        channels = json.loads(config.read_text())
        channels[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
        config.write_text(json.dumps(channels))
        path = self.base / "input" / "data" / name
        path.mkdir(parents=True)
        return path

    def failure(self) -> str:
        return (self.output / "failure").read_text()


def write_config(
    base: Path,
    hyperparameters: dict[str, str],
    channels: list[str],
    hosts: tuple[str, ...] = ("algo-1",),
    current_host: str = "algo-1",
) -> None:
    """Config JSONs as SageMaker writes them: every hyperparameter value a string."""
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channel_config = {
        c: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for c in channels
    }
    (config / "inputdataconfig.json").write_text(json.dumps(channel_config))
    resource = {
        "current_host": current_host,
        "hosts": list(hosts),
        "network_interface_name": "eth0",
    }
    (config / "resourceconfig.json").write_text(json.dumps(resource))


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture
def make_job(tmp_path: Path, sample_dir: Path) -> Callable[..., Job]:
    """``make_job(hyperparameters, layout="training")``: a fresh tree with the sample data."""
    counter = iter(range(100))

    def make(hyperparameters: dict[str, str] | None = None, layout: str = "training", **kw) -> Job:
        base = tmp_path / f"job{next(counter)}" / "opt" / "ml"
        data = base / "input" / "data"
        if layout == "training":
            shutil.copytree(sample_dir, data / "training")
            channels = ["training"]
        else:  # one channel per split, with "validation" as the valid channel's name
            channels = ["train", "validation", "test"]
            for channel, split in zip(channels, ("train", "valid", "test"), strict=True):
                shutil.copytree(sample_dir / split, data / channel)
        write_config(base, {**FAST, **(hyperparameters or {})}, channels, **kw)
        return Job(base)

    return make


class RunningJob:
    """A job started with :meth:`Job.popen`, its log read on a thread so that no wait can hang."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        """Until a log line contains ``text``; fails naming the wait when it does not come."""
        deadline = time.monotonic() + timeout
        with self._new:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive() and self.process.poll() is not None:
                    raise AssertionError(
                        f"no log line with {text!r} in {timeout} s:\n{self.log[-3000:]}"
                    )
                self._new.wait(min(left, 1.0))

    def wait_exit(self, timeout: float) -> float:
        """Seconds until the job exited; fails (and kills it) past ``timeout``."""
        started = time.monotonic()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree()
            raise AssertionError(
                f"the job did not end within {timeout} s:\n{self.log[-3000:]}"
            ) from None
        self._reader.join(10)
        return time.monotonic() - started

    def processes(self) -> list[psutil.Process]:
        """The job's descendants (the toolkit's child, torchrun, ranks, loader processes)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def training_processes(self) -> list[psutil.Process]:
        """Processes running ``-m dogbreed.train`` (ranks included, their forked loaders not)."""
        found = []
        for proc in self.processes():
            try:
                command = proc.cmdline()
                if "dogbreed.train" not in command or "dogbreed.train.ranks" in command:
                    continue
                if proc.parent().cmdline() != command:  # a loader is a fork: the same command
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def kill_tree(self) -> None:
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self.process.poll() is None:
            self.process.kill()


@pytest.fixture
def start_job() -> Callable[..., RunningJob]:
    """``start_job(job, **env)``: run it in the background; everything it left is killed after."""
    started: list[RunningJob] = []

    def start(job: Job, **extra: str) -> RunningJob:
        running = RunningJob(job.popen(**extra))
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill_tree()
