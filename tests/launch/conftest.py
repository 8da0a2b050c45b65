"""Launcher fixtures: fake AWS that cannot reach AWS, request stubs, and one real training run.

Every AWS call goes through a botocore ``Stubber`` that checks the exact request parameters;
anything unstubbed would go to ``AWS_ENDPOINT_URL`` (a closed port on 127.0.0.1) and fail.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.stub import Stubber
from moto.server import ThreadedMotoServer

from dogbreed.launch.session import Aws
from dogbreed.launch.training.debugger import DebuggerSettings, debugger_request
from dogbreed.train.sample_data import write_sample

from .permission_stubs import stub_role_may_run, stub_training_quotas

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/dogbreed-sagemaker"
TRAIN_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-train:1.0"
SERVE_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-serve:1.0"
RULE_IMAGE = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"
BREEDS = ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier")
SPLITS = ("train", "valid", "test")


def stub_folders(s3: Stubber, bucket: str, prefix: str, folders: Iterable[str]) -> None:
    """One ListObjectsV2 page: the folders directly under ``s3://bucket/prefix``."""
    common = [{"Prefix": f"{prefix}{folder}/"} for folder in folders]
    s3.add_response(
        "list_objects_v2",
        {"CommonPrefixes": common, "KeyCount": len(common), "IsTruncated": False},
        {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"},
    )


def stub_split_channels(
    s3: Stubber, bucket: str, root: str, classes: Iterable[str] = BREEDS
) -> None:
    """``root`` + ``train/ valid/ test/``, each holding ``classes``: one listing per split."""
    for split in SPLITS:
        stub_folders(s3, bucket, f"{root}{split}/", classes)


def stub_dog_images(s3: Stubber, bucket: str = "bucket", root: str = "dogImages/") -> None:
    """The dogImages layout under one prefix: the split folders, then each split's classes."""
    stub_folders(s3, bucket, root, SPLITS)
    stub_split_channels(s3, bucket, root)


def trust_policy(service: str = "sagemaker.amazonaws.com") -> str:
    """A role's AssumeRolePolicyDocument as IAM sends it: URL-encoded JSON."""
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return quote(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def role_description(arn: str = ROLE, policy: str | None = None) -> dict:
    """A GetRole response for ``arn``, trusting SageMaker unless ``policy`` says otherwise."""
    return {
        "Role": {
            "Path": "/",
            "RoleName": arn.rsplit("/", 1)[-1],
            "RoleId": "AROAEXAMPLEROLEID0001",
            "Arn": arn,
            "CreateDate": datetime(2026, 1, 1),
            "AssumeRolePolicyDocument": policy or trust_policy(),
        }
    }


def stub_preflight(
    stub: Callable[[str], Stubber], image: str = TRAIN_IMAGE, bucket: str = "bucket"
) -> None:
    """A healthy account for `train`/`tune`'s preflight: the role trusts SageMaker, ``bucket`` is
    in the job's region (us-east-1: no LocationConstraint), ``image`` is in ECR, IAM's policy
    simulator says the role may use them, and the training quotas (on-demand and spot) are 8."""
    stub("iam").add_response("get_role", role_description(), {"RoleName": ROLE.rsplit("/", 1)[-1]})
    s3 = stub("s3")
    s3.add_response("head_bucket", {}, {"Bucket": bucket})
    s3.add_response("get_bucket_location", {}, {"Bucket": bucket})
    registry, _, path = image.partition("/")
    repository, _, tag = path.partition(":")
    image_id = {"imageTag": tag}
    detail = {
        "registryId": registry.split(".")[0],
        "repositoryName": repository,
        "imageTags": [tag],
    }
    stub("ecr").add_response(
        "describe_images",
        {"imageDetails": [detail]},
        {"registryId": detail["registryId"], "repositoryName": repository, "imageIds": [image_id]},
    )
    stub_role_may_run(stub, ROLE, image, bucket)
    stub_training_quotas(stub)


def training_job_description(name: str = "dogbreed-train-1", **fields: object) -> dict:
    """A DescribeTrainingJob response: a completed one-instance job, with ``fields`` on top."""
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:training-job/{name}",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "CreationTime": datetime(2026, 1, 1),
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {
            "InstanceType": "ml.g4dn.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/runs/{name}/output/model.tar.gz"},
        **fields,
    }


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_") or key == "DOGBREED_ROLE_ARN":
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: never AWS
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


@pytest.fixture
def aws(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """One Aws whose clients the test stubs; the CLI's ``Aws.connect`` returns it.

    Its region is ``REGION`` unless a test asks for another with
    ``@pytest.mark.parametrize("aws", ["eu-central-2"], indirect=True)``.
    """
    connected = Aws.connect(region=getattr(request, "param", REGION))
    monkeypatch.setattr(
        Aws, "connect", classmethod(lambda cls, region=None, profile=None: connected)
    )
    return connected


@pytest.fixture
def stub(aws: Aws) -> Iterator[Callable[[str], Stubber]]:
    """``stub("sagemaker")``: an active Stubber on that client; all its responses must be used."""
    stubbers: dict[str, Stubber] = {}

    def make(service: str) -> Stubber:
        if service not in stubbers:
            stubbers[service] = Stubber(aws.client(service))
            stubbers[service].activate()
        return stubbers[service]

    yield make
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


@dataclass(frozen=True)
class TrainedJob:
    """A real run of our trainer through the toolkit's ``train``, with the Debugger hook on."""

    base: Path
    log: str
    tensors: Path

    @property
    def model_dir(self) -> Path:
        return self.base / "model"


@pytest.fixture(scope="session")
def trained_job(tmp_path_factory: pytest.TempPathFactory) -> TrainedJob:
    """Train 3 tiny epochs with the hook config the launcher asks SageMaker for.

    SageMaker turns a job's ``DebugHookConfig`` into ``input/config/debughookconfig.json`` (plus
    ``LocalPath``, where the hook writes); we write the launcher's own config there, with small
    intervals so a 15-step run saves several points.
    """
    root = tmp_path_factory.mktemp("trained")
    base = root / "opt" / "ml"
    write_sample(base / "input" / "data" / "training")
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = {
        "image-size": "64",
        "batch-size": "8",
        "epochs": "3",
        "pretrained": "false",
        "export": "false",  # tests/train/test_export.py covers the export
    }
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(
        json.dumps({"training": {"TrainingInputMode": "File"}})
    )
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        )
    )
    settings = DebuggerSettings(
        s3_output="s3://bucket/debug", losses_interval=1, weights_interval=2, gradients_interval=2
    )
    hook = debugger_request(settings, REGION)["DebugHookConfig"]
    tensors = root / "tensors"
    (config / "debughookconfig.json").write_text(json.dumps({**hook, "LocalPath": str(tensors)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.update(
        SAGEMAKER_BASE_DIR=str(base),
        SAGEMAKER_TRAINING_MODULE="dogbreed.train.toolkit:train",
        OMP_NUM_THREADS="1",
    )
    train = str(Path(sys.executable).with_name("train"))
    result = subprocess.run([train], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return TrainedJob(base=base, log=result.stdout + result.stderr, tensors=tensors)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_url(moto_url: str, fake_aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty moto S3 that every client of this test talks to."""
    reset = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    return moto_url
