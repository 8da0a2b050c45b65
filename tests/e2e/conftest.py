"""End-to-end fixtures: a real Docker engine, the two images, a registry, a trained model.

Every test under ``tests/e2e`` gets the ``e2e`` marker. Without a reachable engine they skip,
except under ``CI=true``, where a missing engine (or registry tool) fails them. Helpers live in
``e2e_support.py`` (this folder is put on ``sys.path``: ``from e2e_support import ...``).

Session fixtures (stable names; other e2e tests build on them):

- ``docker_engine``: ``None`` once ``docker info`` answers.
- ``base_image``: what the images build FROM: ``$DOGBREED_BASE_IMAGE`` when set (e.g. the official
  PyTorch image), else the offline stand-in from ``scripts/build_standin_base.sh`` (cached by tag).
- ``train_image`` / ``serve_image``: ``dogbreed-train:e2e`` / ``dogbreed-serve:e2e``, built from
  this tree by ``scripts/build_images.sh`` (``BAKE_WEIGHTS=0``); docker's layer cache makes the
  rebuild of an unchanged tree take seconds.
- ``slim_image``: ``dogbreed-serve-slim:e2e`` (ONNX Runtime, no torch), built on the slim stand-in
  (``build_standin_base.sh --slim``), or on python:3.11-slim when ``$DOGBREED_BASE_IMAGE`` is set
  (under ``CI=true`` only if that image is already here: CI never pulls from Docker Hub);
  ``slim_base_image`` is the base it was built on.
- ``sample_data``: the bundled sample (``train/ valid/ test/``), written on the host.
- ``trained_job``: one ``docker run <train_image> train`` on an /opt/ml tree laid out as
  SageMaker lays it out (``e2e_support.TrainingRun``: tree, exit code, log, seconds).
- ``registry``: ``host:port`` of a local registry: ``$DOGBREED_TEST_REGISTRY`` (``.ci/run`` starts
  one on 127.0.0.1:5000), else a ``docker-registry`` started for the session.
- ``figures``: a dict; what tests put in it is printed in the terminal summary.
Function fixture ``scratch_dir``: a folder under /tmp, removed afterwards (root-owned files too).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from e2e_support import (  # noqa: E402
    FIGURES,
    IN_CI,
    REPO_ROOT,
    TrainingRun,
    free_port,
    make_opt_ml,
    run,
    run_training,
    unavailable,
    wait_for_http,
)

IMAGE_TAG = "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("e2e figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def figures() -> dict[str, str]:
    return FIGURES


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    try:
        info = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        unavailable("docker info did not answer within 30 s")
    if info.returncode != 0:
        unavailable(f"no Docker engine reachable: {info.stderr.strip()[-300:]}")


def _script(args: list[str], what: str, timeout: float = 1800) -> str:
    """Run one of our build scripts; return the last stdout line, or fail with its log tail."""
    start = time.monotonic()
    result = run([str(REPO_ROOT / "scripts" / args[0]), *args[1:]], timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}", False)
    FIGURES[what] = f"{time.monotonic() - start:.0f} s"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    given = os.environ.get("DOGBREED_BASE_IMAGE")
    if given:
        return given
    if shutil.which("debootstrap") is None:
        printed = run([str(REPO_ROOT / "scripts" / "build_standin_base.sh"), "--print-tag"])
        if run(["docker", "image", "inspect", printed.stdout.strip()]).returncode != 0:
            unavailable("debootstrap is not installed, so the stand-in base image cannot be built")
    return _script(["build_standin_base.sh"], "stand-in base image (built or reused)")


def _build(role: str, base: str) -> str:
    args = ["build_images.sh", "--base-image", base, "--tag", IMAGE_TAG, "--bake-weights", "0"]
    return _script([*args, role], f"{role} image build (docker layer cache)")


@pytest.fixture(scope="session")
def train_image(base_image: str) -> str:
    return _build("train", base_image)


@pytest.fixture(scope="session")
def serve_image(base_image: str) -> str:
    return _build("serve", base_image)


@pytest.fixture(scope="session")
def slim_base_image(docker_engine: None) -> str:
    """The base serve-slim builds FROM: python:3.11-slim, or its offline stand-in."""
    dockerfile = (REPO_ROOT / "docker" / "serve-slim" / "Dockerfile").read_text()
    official = re.search(r"^ARG BASE_IMAGE=(\S+)", dockerfile, re.M)
    assert official, "docker/serve-slim/Dockerfile has no ARG BASE_IMAGE default"
    present = run(["docker", "image", "inspect", official[1]]).returncode == 0
    if os.environ.get("DOGBREED_BASE_IMAGE") and (present or not IN_CI):
        return official[1]
    standin = ["build_standin_base.sh", "--slim"]
    if shutil.which("debootstrap") is None:
        printed = run([str(REPO_ROOT / "scripts" / standin[0]), *standin[1:], "--print-tag"])
        if run(["docker", "image", "inspect", printed.stdout.strip()]).returncode != 0:
            unavailable("debootstrap is not installed, so the slim stand-in base cannot be built")
    return _script(standin, "slim stand-in base image (built or reused)")


@pytest.fixture(scope="session")
def slim_image(slim_base_image: str) -> str:
    base = "standin" if slim_base_image.startswith("dogbreed-standin-") else "official"
    args = ["build_images.sh", "--base-image", base, "--tag", IMAGE_TAG, "serve-slim"]
    return _script(args, "serve-slim image build (docker layer cache)")


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    subprocess.run([sys.executable, "-m", "dogbreed.train.sample_data", str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def trained_job(
    train_image: str, sample_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> TrainingRun:
    splits = {name: sample_data / name for name in ("train", "valid", "test")}
    job = run_training(train_image, make_opt_ml(tmp_path_factory.mktemp("opt_ml"), splits))
    FIGURES["train container, 2 epochs on the sample, CPU"] = f"{job.seconds:.1f} s"
    return job


@pytest.fixture(scope="session")
def registry(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("DOGBREED_TEST_REGISTRY")
    if given:
        try:
            wait_for_http(f"http://{given}/v2/", timeout=10)
        except TimeoutError as exc:
            pytest.fail(f"DOGBREED_TEST_REGISTRY={given} does not answer: {exc}", False)
        yield given
        return
    binary = shutil.which("docker-registry") or shutil.which("registry")
    if binary is None:
        unavailable("no local registry: set DOGBREED_TEST_REGISTRY or install docker-registry")
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    with (root / "registry.log").open("w") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        try:
            wait_for_http(f"http://{address}/v2/", timeout=30)
            yield address
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A temporary folder under /tmp (short paths for bind mounts), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="dogbreed-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
