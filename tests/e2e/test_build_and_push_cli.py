"""scripts/build_and_push.sh: its help, and the clear failures for missing tools and settings."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, run

SCRIPT = REPO_ROOT / "scripts" / "build_and_push.sh"


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """PATH with docker and the basic tools only (no aws), and no AWS settings at all."""
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    docker = shutil.which("docker")
    assert docker is not None
    (tools / "docker").symlink_to(docker)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{tools}:/usr/sbin:/usr/bin:/sbin:/bin"
    env["AWS_CONFIG_FILE"] = str(tmp_path / "no-aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-aws-credentials")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra)
    return env


def test_help_explains_every_option() -> None:
    result = run([str(SCRIPT), "--help"])
    assert result.returncode == 0
    source = SCRIPT.read_text()
    options = set(re.findall(r"^\s+(--[a-z-]+)(?: \| (--[a-z-]+))?\)", source, re.M))
    flat = {o for pair in options for o in pair if o}
    assert {"--region", "--registry", "--tag", "--endpoint-url", "--no-build"} <= flat
    for option in flat:
        assert re.search(rf"^\s+{option}\b", result.stdout, re.M), (
            f"--help does not explain {option}"
        )


def test_help_names_the_three_images_and_where_their_uris_go() -> None:
    result = run([str(SCRIPT), "--help"])
    assert "[train|serve|serve-slim|all]" in result.stdout
    for role, option in [
        ("train", "dogbreed train --image"),
        ("serve", "dogbreed deploy --serve-image"),
        ("serve-slim", "dogbreed deploy --slim-image"),
    ]:
        assert re.search(rf"^\s+{role}\s.*{option} URI$", result.stdout, re.M), role


def test_unknown_option_fails_with_usage() -> None:
    result = run([str(SCRIPT), "--regoin", "eu-west-1"])
    assert result.returncode != 0
    assert "unknown argument: --regoin" in result.stderr
    assert "Usage:" in result.stderr


def test_missing_aws_cli_is_named(docker_engine: None, tmp_path: Path) -> None:
    env = bare_env(tmp_path)
    if shutil.which("aws", path=env["PATH"]):
        pytest.skip("an aws CLI is installed system-wide")
    result = run([str(SCRIPT), "--no-build"], env=env)
    assert result.returncode != 0
    assert "the AWS CLI (aws) is not installed" in result.stderr


def test_missing_credentials_are_named(docker_engine: None, tmp_path: Path) -> None:
    import sys

    env = bare_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = run([str(SCRIPT), "--no-build", "--region", "eu-west-1"], env=env, timeout=120)
    assert result.returncode != 0
    assert "no usable AWS credentials" in result.stderr


def test_missing_region_is_named(docker_engine: None, tmp_path: Path) -> None:
    import sys

    env = bare_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    result = run([str(SCRIPT), "--no-build"], env=env, timeout=120)
    assert result.returncode != 0
    assert "no AWS region" in result.stderr


def test_missing_local_image_is_named(docker_engine: None, tmp_path: Path) -> None:
    result = run(
        [str(SCRIPT), "--no-build", "--registry", "127.0.0.1:1", "--tag", "no-such-tag-e2e"],
        env=bare_env(tmp_path),
    )
    assert result.returncode != 0
    assert "no local image dogbreed-train:no-such-tag-e2e" in result.stderr


def test_the_slim_image_alone_is_a_choice(docker_engine: None, tmp_path: Path) -> None:
    tag = "no-such-tag-e2e"
    args = [str(SCRIPT), "--no-build", "--registry", "127.0.0.1:1", "--tag", tag, "serve-slim"]
    result = run(args, env=bare_env(tmp_path))
    assert result.returncode != 0
    assert f"no local image dogbreed-serve-slim:{tag}" in result.stderr


def test_invalid_tag_is_refused(tmp_path: Path) -> None:
    result = run([str(SCRIPT), "--tag", "bad tag!", "--registry", "127.0.0.1:1"])
    assert result.returncode != 0
    assert "invalid tag" in result.stderr
