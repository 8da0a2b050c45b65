"""The launcher's own requests, run by the SageMaker SDK's local mode against our images.

``Aws.local_mode()`` swaps boto3's ``sagemaker`` / ``sagemaker-runtime`` clients for
``sagemaker.core.local``'s: the same CreateTrainingJob / CreateModel / CreateEndpointConfig /
CreateEndpoint / InvokeEndpoint / CreateTransformJob requests the launcher sends to AWS are
executed with ``docker compose`` and ``file://`` data on this machine. AWS_ENDPOINT_URL points
at a closed local port, so any call that tried to reach AWS would fail the test.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import FIGURES, free_port, run
from PIL import Image

from dogbreed.artifact import load_artifact
from dogbreed.launch.cli.main import main
from dogbreed.launch.endpoints.deploy import EndpointSpec, cleanup, deploy, model_request
from dogbreed.launch.endpoints.invoke import invoke, read_image
from dogbreed.launch.endpoints.transform import TransformSpec, start_transform
from dogbreed.launch.session import Aws, unique_name
from dogbreed.launch.training.jobs import model_artifact_of
from dogbreed.metrics import OBJECTIVE_METRIC, parse_metric_line
from dogbreed.splits import class_label

HYPERPARAMETERS = {
    "epochs": "2",
    "batch-size": "8",
    "image-size": "64",
    "pretrained": "false",
    "workers": "0",
}


@pytest.fixture
def sdk_containers() -> Iterator[None]:
    """Remove the containers local mode leaves behind (``compose up`` without ``down``)."""
    listing = ["docker", "ps", "-a", "-q", "--filter", "name=algo-"]
    before = set(run(listing).stdout.split())
    yield
    created = set(run(listing).stdout.split()) - before
    if created:
        run(["docker", "rm", "-f", *sorted(created)])


@pytest.fixture
def no_telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK would GET an S3 URL per call to report usage; the launcher opts out: check it."""
    sent: list[tuple] = []
    monkeypatch.setattr(
        "sagemaker.core.telemetry.telemetry_logging._send_telemetry_request",
        lambda *args, **kwargs: sent.append(args),
    )
    yield
    assert not sent, f"the SDK tried to send telemetry: {sent}"


@pytest.fixture
def offline_aws(
    monkeypatch: pytest.MonkeyPatch, scratch_dir: Path, sdk_containers: None, no_telemetry: None
) -> Aws:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: never AWS
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    root = scratch_dir / "containers"
    root.mkdir()
    config = {
        "local": {"container_root": str(root), "serving_port": free_port(), "local_code": True}
    }
    return Aws.local_mode(config=config)


def test_local_mode_trains_serves_and_batch_transforms_with_our_images(
    offline_aws: Aws,
    train_image: str,
    serve_image: str,
    sample_data: Path,
    scratch_dir: Path,
    capfd,
) -> None:
    aws = offline_aws
    breeds = [class_label(p.name) for p in sorted((sample_data / "train").iterdir())]

    # Training job: `dogbreed train --local`, local paths become file:// channels and output.
    output = scratch_dir / "output"
    output.mkdir()
    job = unique_name("dogbreed-local")
    args = ["train", "--local", "--image", train_image, "--name", job]
    args += ["--data", str(sample_data), "--output", str(output)]
    args += [f"--hp={key}={value}" for key, value in HYPERPARAMETERS.items()]
    started = time.monotonic()
    assert main(args) == 0
    FIGURES["SDK local mode: training job (2 epochs, sample, CPU)"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    log = capfd.readouterr().out
    metric_lines = [m for m in map(parse_metric_line, log.splitlines()) if m]
    assert any(OBJECTIVE_METRIC in m for m in metric_lines), log[-3000:]
    assert f"model: {(output / 'model.tar.gz').as_uri()}" in log

    model_data = model_artifact_of(aws, job)
    assert model_data == (output / "model.tar.gz").as_uri()
    model, model_spec = load_artifact(output / "model.tar.gz")
    assert model_spec.class_names == breeds
    assert model_spec.hyperparameters["epochs"] == 2

    # Endpoint: model -> endpoint config -> endpoint, then InvokeEndpoint with a test JPEG.
    endpoint = EndpointSpec(
        name=f"{job}-ep",
        image_uri=serve_image,
        model_data=model_data,
        role_arn="arn:aws:iam::000000000000:role/dogbreed-local",
        instance_type="local",
    )
    started = time.monotonic()
    try:
        described = deploy(aws, endpoint)
        FIGURES["SDK local mode: endpoint InService"] = f"{time.monotonic() - started:.1f} s"
        assert described["EndpointStatus"] == "InService"
        picture = next((sample_data / "test").rglob("*.jpg"))
        predictions = invoke(aws, endpoint.name, read_image(picture), top_k=3)
    finally:
        removed = cleanup(aws, endpoint.name)
    assert len(predictions) == 3
    assert {p["label"] for p in predictions} <= set(breeds)
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert removed == [
        f"endpoint {endpoint.name}",
        f"endpoint config {endpoint.name}",
        f"model {endpoint.name}",
    ]

    # Batch transform over a folder of photos (JPEG and PNG): one JSON answer per file. Local
    # mode reads only the folder's top level (SageMaker reads an S3 prefix recursively).
    photos = scratch_dir / "photos"
    photos.mkdir()
    for path in sorted((sample_data / "test").rglob("*.jpg")):
        shutil.copy(path, photos / path.name)
    with Image.open(path) as last:
        last.save(photos / "as_png.png", "PNG")
    aws.sagemaker.create_model(**model_request(endpoint, local=True))
    results = scratch_dir / "predictions"
    transform = TransformSpec(
        name=f"{job}-batch",
        model_name=endpoint.name,
        input_uri=photos.as_uri(),
        output_uri=results.as_uri(),
        instance_type="local",
    )
    started = time.monotonic()
    start_transform(aws, transform)
    FIGURES["SDK local mode: batch transform of 17 photos"] = f"{time.monotonic() - started:.1f} s"
    outputs = sorted(p.name for p in results.iterdir())
    assert outputs == sorted(f"{p.name}.out" for p in photos.iterdir())
    for name in outputs:
        rows = json.loads((results / name).read_text())["predictions"]
        assert len(rows) == 1 and rows[0][0]["label"] in breeds
    assert (
        aws.sagemaker.describe_transform_job(TransformJobName=transform.name)["TransformJobStatus"]
        == "Completed"
    )
    aws.sagemaker.delete_model(ModelName=endpoint.name)  # (the local endpoint is already gone)
