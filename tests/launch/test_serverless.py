"""deploy --serverless: the ServerlessConfig, SageMaker's limits checked before any request, and
the 4 MB payload limit followed by the server and by invoke."""

from __future__ import annotations

import pytest

from dogbreed.launch.cli.main import main
from dogbreed.launch.endpoints.deploy import EndpointSpec, server_environment
from dogbreed.launch.endpoints.serverless import ServerlessSpec
from dogbreed.serve.config import ServerSettings

from .conftest import ROLE, SERVE_IMAGE
from .endpoint_stubs import (
    DEPLOY_ARGS,
    MODEL_DATA,
    NAME,
    SLIM_IMAGE,
    endpoint,
    stub_deploy,
    stub_target,
)
from .test_endpoint import BOTH_IMAGES, jpeg_file, noise_png

SERVER_LIMITS = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "4", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60"}


def test_serverless_deploy_sends_its_config_the_slim_image_and_the_4_mb_server_limit(
    stub, capsys
) -> None:
    sm = stub("sagemaker")
    serverless = {"MemorySizeInMB": 3072, "MaxConcurrency": 10, "ProvisionedConcurrency": 2}
    stub_deploy(sm, SLIM_IMAGE, {"ServerlessConfig": serverless}, SERVER_LIMITS)
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    args = ["--serverless", "--memory-mb", "3072", "--max-concurrency", "10"]
    args += ["--provisioned-concurrency", "2", "--no-wait"]
    assert main([*DEPLOY_ARGS, *BOTH_IMAGES, *args]) == 0
    out = capsys.readouterr().out
    assert "to serverless endpoint dogs (serverless)" in out
    assert "slim serving image (ONNX Runtime) for serverless" in out


def test_serverless_defaults_are_2_gb_and_5_concurrent(stub) -> None:
    sm = stub("sagemaker")
    config = {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}
    stub_deploy(sm, SERVE_IMAGE, config, SERVER_LIMITS)
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    args = ["--serve-image", SERVE_IMAGE, "--serverless", "--no-wait"]
    assert main([*DEPLOY_ARGS, *args]) == 0


def test_the_server_takes_the_limits_a_serverless_deploy_sets() -> None:
    spec = EndpointSpec("dogs", SLIM_IMAGE, MODEL_DATA, ROLE, serverless=ServerlessSpec())
    settings = ServerSettings.from_env(server_environment(spec), cpus=2, gpus=0)
    assert settings.max_payload_mb == 4 and settings.timeout_s == 60


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--serverless", "--memory-mb", "1000"], "--memory-mb 1000: Serverless Inference takes"),
        (["--serverless", "--memory-mb", "1536"], "one of 1024, 2048, 3072, 4096, 5120, 6144"),
        (["--serverless", "--memory-mb", "7168"], "--memory-mb 7168"),
        (["--serverless", "--max-concurrency", "0"], "--max-concurrency 0: Serverless"),
        (["--serverless", "--max-concurrency", "201"], "takes 1-200"),
        (
            ["--serverless", "--max-concurrency", "4", "--provisioned-concurrency", "5"],
            "--provisioned-concurrency 5: must be 1 to --max-concurrency (4)",
        ),
        (["--serverless", "--instance-type", "ml.m5.large"], "drop --instance-type"),
        (["--memory-mb", "2048"], "--memory-mb apply to --serverless endpoints only"),
        (["--serverless", "--async", "--output-s3", "s3://b/o/"], "pick one"),
        (["--serverless", "--autoscale-max", "2"], "drop --autoscale-max"),
        (
            ["--serverless", "--env", "SAGEMAKER_MAX_PAYLOAD_IN_MB=6"],
            "serverless endpoints take 1-4",
        ),
    ],
)
def test_serverless_limits_are_refused_before_any_request(stub, capsys, args, complaint) -> None:
    stub("sagemaker")  # nothing queued: any request fails the test
    assert main([*DEPLOY_ARGS, *BOTH_IMAGES, *args]) == 1
    assert complaint in capsys.readouterr().err


def test_invoke_refuses_more_than_4_mb_for_a_serverless_endpoint(stub, tmp_path, capsys) -> None:
    stub_target(
        stub("sagemaker"),
        {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}},
        {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "4"},
    )
    stub("sagemaker-runtime")  # nothing queued: 5 MB passes real-time's limit, not serverless'
    big = noise_png(tmp_path / "big.png", 5)
    assert main(["invoke", "dogs", str(jpeg_file(tmp_path / "ok.jpg")), str(big)]) == 1
    err = capsys.readouterr().err
    assert "over the 4 MB payload limit of serverless endpoint 'dogs'" in err
