"""The `dogbreed` console script: every subcommand answers --help, quickly and usefully."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.launch.cli.main import COMMANDS
from dogbreed.launch.training.report import debugger_output_of

DOGBREED = str(Path(sys.executable).with_name("dogbreed"))
KEY_OPTIONS = {
    "tune": [
        "--range",
        "--max-jobs",
        "--max-parallel",
        "--status",
        "--wait",
        "--spot",
        "--skip-preflight",
    ],
    "train": [
        "--from-tuning-job",
        "--rules",
        "--gradients-interval",
        "--spot",
        "--checkpoint-s3",
        "--instance-count",
        "--input-mode",
        "--local",
        "--no-profiler",
        "--skip-preflight",
    ],
    "deploy": ["--job", "--model-data", "--autoscale-max", "--image"],
    "invoke": ["--top-k", "images"],
    "transform": ["--input", "--output", "--model"],
    "cleanup": ["endpoint"],
    "report": ["trial", "--job", "--out", "--wait"],
    "logs": ["name", "--follow", "--trial", "--timeout"],
    "status": ["name"],
    "endpoints": ["--region", "--profile"],
    "preflight": ["--role", "--bucket", "--train-image", "--serve-image", "--max-parallel"],
}


def test_top_level_help_lists_every_subcommand() -> None:
    result = subprocess.run([DOGBREED, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert set(COMMANDS) >= set(KEY_OPTIONS)


@pytest.mark.parametrize("command", sorted(KEY_OPTIONS))
def test_subcommand_help(command: str) -> None:
    result = subprocess.run(
        [DOGBREED, command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: dogbreed {command}")
    for option in KEY_OPTIONS[command]:
        assert option in result.stdout


def test_a_missing_required_option_is_a_usage_error() -> None:
    result = subprocess.run(
        [DOGBREED, "deploy", "--image", "x"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "one of the arguments --job --model-data is required" in result.stderr


def test_no_region_is_a_clear_error(monkeypatch, capsys) -> None:
    from dogbreed.launch.cli.main import main

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert main(["cleanup", "dogs"]) == 1
    assert "no AWS region: pass --region" in capsys.readouterr().err


def test_the_debugger_output_of_a_job_is_under_its_name() -> None:
    job = {"TrainingJobName": "j-1", "DebugHookConfig": {"S3OutputPath": "s3://b/runs/"}}
    assert debugger_output_of(job) == "s3://b/runs/j-1/debug-output"


def test_local_mode_opts_out_of_the_sdks_telemetry(monkeypatch) -> None:
    """Local mode must stay local: the SDK would otherwise GET an S3 URL on each decorated call."""
    from sagemaker.core.local import LocalSession

    from dogbreed.launch.session import Aws

    sent: list[tuple] = []
    monkeypatch.setattr(
        "sagemaker.core.telemetry.telemetry_logging._send_telemetry_request",
        lambda *args, **kwargs: sent.append(args),
    )
    container = {"Image": "dogbreed-serve:latest", "ModelDataUrl": "file:///tmp/model.tar.gz"}
    LocalSession().sagemaker_client.create_model("telemetry-on", container)
    assert sent  # the check can see a send: the SDK's default reports usage
    sent.clear()
    Aws.local_mode().sagemaker.create_model("telemetry-off", container)
    assert sent == []
