"""scripts/build_and_push.sh against a real local registry, and its ECR path against moto.

The registry test pushes all three images (train, serve, serve-slim), removes them locally, pulls
them back by the digest the registry holds and runs them: the pushed train image trains a model
(with its ONNX export), and both pushed serving images serve it. The images' local tags are
restored afterwards (same image ids), so later tests reuse them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import (
    REPO_ROOT,
    Container,
    free_port,
    make_opt_ml,
    run,
    run_training,
    unavailable,
    wait_for_http,
)

SCRIPT = REPO_ROOT / "scripts" / "build_and_push.sh"
VENV_BIN = Path(sys.executable).parent
MOTO_ACCOUNT = "123456789012"  # moto's fixed account id
MOTO_PASSWORD = f"{MOTO_ACCOUNT}-auth-token"  # what moto's GetAuthorizationToken hands out
ROLES = ("train", "serve", "serve-slim")  # build_and_push.sh's order
#: Manifest types a registry may hold for a `docker push` (schema 2, OCI, or a list/index).
MANIFEST_TYPES = ", ".join(
    f"application/vnd.{kind}"
    for kind in (
        "docker.distribution.manifest.v2+json",
        "docker.distribution.manifest.list.v2+json",
        "oci.image.manifest.v1+json",
        "oci.image.index.v1+json",
    )
)


def push_env(**extra: str) -> dict[str, str]:
    """This environment with the venv's tools (aws) first on PATH and no real AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(extra)
    return env


def image_id(image: str) -> str:
    return run(["docker", "image", "inspect", "--format", "{{.Id}}", image]).stdout.strip()


def registry_digest(registry: str, uri: str) -> str:
    """The digest the registry serves for ``uri``'s tag (its Docker-Content-Digest)."""
    name, tag = uri.removeprefix(f"{registry}/").rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES},
        method="HEAD",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Docker-Content-Digest"]


@pytest.fixture
def pushed(registry: str, base_image: str, train_image: str, serve_image: str) -> list[str]:
    """The three images built and pushed to the local registry by build_and_push.sh --registry."""
    tag = train_image.rsplit(":", 1)[1]
    args = [str(SCRIPT), "--registry", registry, "--tag", tag]
    args += ["--base-image", base_image, "--bake-weights", "0"]
    result = run(args, timeout=1800, env=push_env())
    assert result.returncode == 0, result.stderr[-4000:]
    uris = result.stdout.split()
    assert uris == [f"{registry}/dogbreed-{role}:{tag}" for role in ROLES]
    slim_uri = uris[2]
    assert f"{slim_uri}  ->  dogbreed deploy --slim-image" in result.stderr
    return uris


def test_push_to_a_registry_then_pull_back_by_digest_and_run(
    pushed: list[str], registry: str, sample_data: Path, scratch_dir: Path
) -> None:
    originals = {}
    for uri in pushed:
        name, tag = uri.removeprefix(f"{registry}/").rsplit(":", 1)
        with urllib.request.urlopen(f"http://{registry}/v2/{name}/tags/list") as response:
            assert tag in json.load(response)["tags"]
        inspected = json.loads(run(["docker", "image", "inspect", uri]).stdout)[0]
        by_digest = f"{registry}/{name}@{registry_digest(registry, uri)}"
        assert by_digest in inspected["RepoDigests"], "docker pushed another manifest"
        originals[uri] = (inspected["Id"], inspected["RepoTags"], by_digest)
    try:
        for uri, (ident, _, _) in originals.items():
            removed = run(["docker", "rmi", "-f", ident])
            assert removed.returncode == 0, removed.stderr
            assert run(["docker", "image", "inspect", uri]).returncode != 0
        for uri, (ident, _, by_digest) in originals.items():
            pulled = run(["docker", "pull", by_digest], timeout=1200)
            assert pulled.returncode == 0, pulled.stderr
            assert image_id(by_digest) == ident, "the pulled image differs from the pushed one"
            run(["docker", "tag", by_digest, uri])
    finally:
        for uri, (_, tags, _) in originals.items():
            for tag in tags:
                if tag != uri and run(["docker", "image", "inspect", uri]).returncode == 0:
                    run(["docker", "tag", uri, tag])

    train_uri, serve_uri, slim_uri = pushed
    opt_ml = make_opt_ml(
        scratch_dir / "opt_ml",
        {"training": sample_data},
        {"epochs": "1", "batch-size": "8", "image-size": "64", "pretrained": "false"},
    )
    job = run_training(train_uri, opt_ml)
    assert job.returncode == 0, job.log[-3000:]
    model_dir = opt_ml / "model"
    assert (model_dir / "model.pt").is_file() and (model_dir / "model.onnx").is_file()

    class_names = set(json.loads((model_dir / "model.json").read_text())["class_names"])
    jpeg = next((sample_data / "test").glob("*/*.jpg"))
    for uri in (serve_uri, slim_uri):
        port = free_port()
        args = ["-p", f"127.0.0.1:{port}:8080", "-v", f"{model_dir}:/opt/ml/model:ro"]
        with Container([*args, uri, "serve"]) as server:
            try:
                wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=60)
            except TimeoutError as exc:
                pytest.fail(f"{uri}: {exc}\n{server.read_logs()[-3000:]}")
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations",
                data=jpeg.read_bytes(),
                headers={"Content-Type": "image/jpeg", "Accept": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                (ranked,) = json.load(response)["predictions"]
            assert {row["label"] for row in ranked} <= class_names, f"{uri}: {ranked}"
            assert len(ranked) == min(5, len(class_names))


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    """A moto server (a local AWS API stand-in) on a free 127.0.0.1 port."""
    binary = VENV_BIN / "moto_server"
    if not binary.exists():
        unavailable("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    with (tmp_path / "moto.log").open("w") as log:
        process = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/moto-api/", timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_ecr_path_creates_repositories_logs_in_and_pushes(
    moto_endpoint: str,
    registry: str,
    train_image: str,
    serve_image: str,
    slim_image: str,
    tmp_path: Path,
) -> None:
    """Region and credentials from the AWS CLI's files, API calls to moto via AWS_ENDPOINT_URL;
    the registry host is overridden to the local registry (moto has no registry of its own)."""
    import boto3

    aws_dir = tmp_path / "aws"
    aws_dir.mkdir()
    (aws_dir / "config").write_text("[default]\nregion = eu-west-1\n")
    (aws_dir / "credentials").write_text(
        "[default]\naws_access_key_id = AKIDTESTING\naws_secret_access_key = testing-secret\n"
    )
    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    env = push_env(
        AWS_CONFIG_FILE=str(aws_dir / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(aws_dir / "credentials"),
        AWS_ENDPOINT_URL=moto_endpoint,
        DOCKER_CONFIG=str(docker_config),
    )
    tag = train_image.rsplit(":", 1)[1]
    args = [str(SCRIPT), "--no-build", "--tag", tag, "--ecr-host", registry]

    first = run(args, timeout=1200, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.stdout.split() == [f"{registry}/dogbreed-{role}:{tag}" for role in ROLES]
    for role in ROLES:
        assert f"creating repository dogbreed-{role}\n" in first.stderr
    assert f"ECR registry {MOTO_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com" in first.stderr

    ecr = boto3.client(
        "ecr",
        region_name="eu-west-1",
        endpoint_url=moto_endpoint,
        aws_access_key_id="AKIDTESTING",
        aws_secret_access_key="testing-secret",
    )
    repositories = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}
    assert set(repositories) == {f"dogbreed-{role}" for role in ROLES}
    for name, repository in repositories.items():
        assert (
            repository["repositoryUri"] == f"{MOTO_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/{name}"
        )
        assert repository["imageScanningConfiguration"]["scanOnPush"] is True

    # The password from GetAuthorizationToken reached docker login, and was never printed.
    auths = json.loads((docker_config / "config.json").read_text())["auths"]
    expected = base64.b64encode(f"AWS:{MOTO_PASSWORD}".encode()).decode()
    assert auths[registry]["auth"] == expected
    assert MOTO_PASSWORD not in first.stdout + first.stderr

    again = run(args, timeout=1200, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    for role in ROLES:
        assert f"repository dogbreed-{role} exists" in again.stderr
    assert len(ecr.describe_repositories()["repositories"]) == len(ROLES)
    assert again.stdout == first.stdout
