"""A laptop install: `pip install "dogbreed[launch]"` in a fresh venv, without torch.

The venv gets only the launcher's dependencies; in it every command answers --help, a training
request is built and validated against botocore's service model (no AWS), and a bad ``--hp`` is
refused (that no launcher module imports torch is tests/test_structure.py's fast test). The venv's size and install time are printed beside the full dev venv's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dogbreed.launch.cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[2]
WHEEL_FOLDERS = (Path("/opt/pypi-more/files"), Path("/opt/pypi/files"))
INSTALL_TIMEOUT_S = 900

# Runs in the laptop venv: the CreateTrainingJob request `dogbreed train` builds (hyperparameters
# checked by the trainer's parser, Debugger rules from sagemaker-core), checked against botocore's
# model and sent through a Stubber; `report`'s smdebug is imported too. Prints what it saw.
REQUEST_SNIPPET = """
import json, sys
import boto3
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from smdebug.trials import create_trial
from dogbreed.launch.training.debugger import DebuggerSettings
from dogbreed.launch.training.jobs import TrainingJobSpec, hyperparameter_strings, training_job_request

spec = TrainingJobSpec(
    name="dogbreed-laptop-1",
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-train:1.0",
    role_arn="arn:aws:iam::123456789012:role/dogbreed-sagemaker",
    output_s3="s3://bucket/runs",
    channels={"training": "s3://bucket/dogImages/"},
    hyperparameters=hyperparameter_strings({"lr": "0.02", "batch_size": "64"}),
    debugger=DebuggerSettings(s3_output="s3://bucket/debug"),
)
request = training_job_request(spec, "us-east-1")
client = boto3.client("sagemaker", region_name="us-east-1")
shape = client.meta.service_model.operation_model("CreateTrainingJob").input_shape
report = ParamValidator().validate(request, shape)
assert not report.has_errors(), report.generate_report()
with Stubber(client) as stubber:
    stubber.add_response("create_training_job", {"TrainingJobArn": "arn:t"}, request)
    client.create_training_job(**request)
    stubber.assert_no_pending_responses()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
print(json.dumps({"request": request, "torch_modules": loaded}, default=str))
"""


@dataclass(frozen=True)
class LaptopVenv:
    """A fresh venv holding ``dogbreed[launch]`` (a wheel built from a copy of this repo)."""

    path: Path
    install_s: float

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [str(self.path / "bin" / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )


def size_mb(path: Path) -> int:
    """Disk usage of ``path`` in MiB, as ``du`` counts it."""
    result = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, timeout=300)
    return int(result.stdout.split()[0])


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> LaptopVenv:
    """The install a user runs, timed. It builds from a copy of the package files, as the images
    do, so the build's ``build/`` and ``*.egg-info`` land there and not in the shared work tree."""
    root = tmp_path_factory.mktemp("laptop")
    source = root / "dogbreed"
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    find_links = [arg for d in WHEEL_FOLDERS if d.is_dir() for arg in ("--find-links", str(d))]
    started = time.monotonic()
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *find_links]
        + ["--disable-pip-version-check", "--progress-bar", "off", f"{source}[launch]"],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return LaptopVenv(path=venv, install_s=time.monotonic() - started)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["torch", "torchvision"])
def test_torch_is_not_installed(laptop: LaptopVenv, module: str) -> None:
    result = laptop.run("python", "-c", f"import {module}")
    assert result.returncode != 0
    assert f"No module named '{module}'" in result.stderr


@pytest.mark.slow
def test_top_level_help_lists_every_command(laptop: LaptopVenv) -> None:
    result = laptop.run("dogbreed", "--help")
    assert result.returncode == 0, result.stderr
    listed = laptop.run(
        "python", "-c", "from dogbreed.launch.cli.main import COMMANDS; print(*COMMANDS)"
    )
    assert listed.stdout.split() == list(COMMANDS)
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_answers_help(laptop: LaptopVenv, command: str) -> None:
    result = laptop.run("dogbreed", command, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"usage: dogbreed {command}" in result.stdout


@pytest.mark.slow
def test_a_training_request_is_built_and_validated_without_aws(laptop: LaptopVenv) -> None:
    result = laptop.run("python", "-c", REQUEST_SNIPPET)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["torch_modules"] == []
    request = seen["request"]
    assert request["HyperParameters"] == {"lr": "0.02", "batch-size": "64"}
    assert request["DebugRuleConfigurations"], "sagemaker-core found no Debugger rules"
    assert all(
        "sagemaker-debugger-rules" in rule["RuleEvaluatorImage"]
        for rule in request["DebugRuleConfigurations"]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("hp", "complaint"),
    [("lr=fast", "lr must be a number"), ("dropout=0.5", "unknown hyperparameter")],
)
def test_a_bad_hyperparameter_is_refused_before_any_request(
    laptop: LaptopVenv, hp: str, complaint: str
) -> None:
    result = laptop.run(
        "dogbreed",
        "train",
        "--image",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-train:1.0",
        "--role",
        "arn:aws:iam::123456789012:role/dogbreed-sagemaker",
        "--data",
        "s3://bucket/dogImages/",
        "--output",
        "s3://bucket/runs",
        "--hp",
        hp,
    )
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_laptop_venv_is_a_fraction_of_the_full_one(
    laptop: LaptopVenv, capsys: pytest.CaptureFixture[str]
) -> None:
    launch_mb = size_mb(laptop.path)
    full = REPO / ".venv"
    full_mb = size_mb(full) if (full / "bin" / "python").exists() else None
    with capsys.disabled():
        print(
            f"\n[laptop install] dogbreed[launch]: {launch_mb} MiB, installed in "
            f"{laptop.install_s:.0f} s; full dev venv (.venv, torch + every extra): "
            f"{full_mb if full_mb is not None else 'absent'} MiB"
        )
    if full_mb is not None:
        assert launch_mb * 4 < full_mb
