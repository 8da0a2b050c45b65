"""deploy / invoke / transform / cleanup: exact requests, and errors a user can act on."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from dogbreed.launch.cli.main import main

from .conftest import ROLE, SERVE_IMAGE
from .endpoint_stubs import (
    ARN,
    DEPLOY_ARGS,
    MODEL_DATA,
    NAME,
    SLIM_IMAGE,
    TAGS,
    TOP,
    endpoint,
    predictions_json,
    streaming,
    stub_deploy,
    stub_target,
)

BOTH_IMAGES = ["--slim-image", SLIM_IMAGE, "--serve-image", SERVE_IMAGE]


def test_deploy_with_autoscaling(stub, capsys, monkeypatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)  # the waiter's delay
    sm, scaling = stub("sagemaker"), stub("application-autoscaling")
    stub_deploy(
        sm,
        SLIM_IMAGE,
        {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1},
        {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    )
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    scaling.add_response(
        "register_scalable_target",
        {},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": "endpoint/dogs/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": 1,
            "MaxCapacity": 4,
        },
    )
    scaling.add_response(
        "put_scaling_policy",
        {"PolicyARN": ARN + "p", "Alarms": []},
        {
            "PolicyName": "dogs-invocations",
            "ServiceNamespace": "sagemaker",
            "ResourceId": "endpoint/dogs/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 250.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    args = [
        *DEPLOY_ARGS,
        *BOTH_IMAGES,
        "--instance-type",
        "ml.c5.xlarge",
        "--env",
        "SAGEMAKER_MODEL_SERVER_WORKERS=2",
        "--autoscale-max",
        "4",
        "--target-invocations",
        "250",
    ]
    assert main(args) == 0
    assert "endpoint dogs: InService" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("images", "instance_type", "chosen", "said", "warning"),
    [
        (BOTH_IMAGES, "ml.c5.xlarge", SLIM_IMAGE, "slim serving image (ONNX Runtime) for CPU", ""),
        (BOTH_IMAGES, "ml.g4dn.xlarge", SERVE_IMAGE, "torch serving image for GPU", ""),
        (BOTH_IMAGES, "ml.p3.2xlarge", SERVE_IMAGE, "torch serving image for GPU", ""),
        (
            BOTH_IMAGES,
            "ml.c7g.large",
            SLIM_IMAGE,
            "slim serving image (ONNX Runtime) for CPU (ml.c7g.large) (Graviton, arm64: "
            "the image must be built for linux/arm64)",
            "",
        ),
        (
            ["--image", SERVE_IMAGE],
            "ml.m5.large",
            SERVE_IMAGE,
            "torch serving image on CPU (ml.m5.large): the only image given",
            "about 5.9 GB of CUDA libraries",
        ),
        (
            ["--slim-image", SLIM_IMAGE],
            "ml.g5.xlarge",
            SLIM_IMAGE,
            "slim serving image (ONNX Runtime) on GPU (ml.g5.xlarge)",
            "has a GPU that the slim image leaves idle",
        ),
    ],
)
def test_deploy_picks_the_slim_image_on_cpu_and_the_torch_image_on_gpu(
    stub, capsys, images, instance_type, chosen, said, warning
) -> None:
    sm = stub("sagemaker")
    stub_deploy(sm, chosen, {"InstanceType": instance_type, "InitialInstanceCount": 1})
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    args = [*DEPLOY_ARGS, *images, "--instance-type", instance_type, "--no-wait"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"image: {said}" in captured.out and chosen in captured.out
    assert (warning in captured.err) if warning else "warning" not in captured.err


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--instance-type", "ml.inf2.xlarge"], "Inferentia/Trainium instance"),
        (["--instance-type", "ml.trn1.2xlarge"], "Neuron-compiled model"),
        (["--instance-type", "m5.large"], "not a SageMaker instance type"),
    ],
)
def test_deploy_refuses_instance_types_it_cannot_serve_before_any_request(
    stub, capsys, args, complaint
) -> None:
    stub("sagemaker")  # nothing queued: any request fails the test
    assert main([*DEPLOY_ARGS, *BOTH_IMAGES, *args]) == 1
    assert complaint in capsys.readouterr().err


def test_deploy_without_an_image_says_which_flags_to_pass(stub, capsys) -> None:
    stub("sagemaker")
    assert main(DEPLOY_ARGS) == 1
    err = capsys.readouterr().err
    assert "no serving image" in err and "--slim-image" in err and "--serve-image" in err


def test_deploy_from_a_training_job_uses_its_model_artifact(stub) -> None:
    sm = stub("sagemaker")
    sm.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "dogbreed-train-1",
            "TrainingJobArn": ARN + "t",
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
            "ModelArtifacts": {"S3ModelArtifacts": MODEL_DATA},
        },
        {"TrainingJobName": "dogbreed-train-1"},
    )
    stub_deploy(sm, SLIM_IMAGE, {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1})
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    args = ["deploy", "--job", "dogbreed-train-1", "--slim-image", SLIM_IMAGE]
    assert main([*args, "--role", ROLE, "--name", "dogs", "--no-wait"]) == 0


def jpeg_file(path: Path, size=(48, 40)) -> Path:
    Image.new("RGB", size, (120, 80, 40)).save(path, "JPEG")
    return path


def noise_png(path: Path, megabytes: float) -> Path:
    """A PNG of random pixels: it does not compress, so it holds about ``megabytes`` MiB."""
    side = int((megabytes * 1024 * 1024 / 3) ** 0.5)
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, "PNG")
    return path


def test_invoke_sends_each_image_and_prints_the_top_k(stub, tmp_path, capsys) -> None:
    png = tmp_path / "dog.png"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(png, "PNG")
    jpg = jpeg_file(tmp_path / "dog.jpg")
    stub_target(stub("sagemaker"), {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1})
    runtime = stub("sagemaker-runtime")
    for path, content_type in ((png, "image/png"), (jpg, "image/jpeg")):
        runtime.add_response(
            "invoke_endpoint",
            {"Body": streaming(predictions_json([TOP])), "ContentType": "application/json"},
            {
                "EndpointName": "dogs",
                "ContentType": content_type,
                "Accept": "application/json",
                "CustomAttributes": "top_k=3",
                "Body": path.read_bytes(),
            },
        )
    assert main(["invoke", "dogs", str(png), str(jpg), "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert f"{png}:\n  1. 001.Affenpinscher" in out and f"{jpg}:" in out
    assert "0.7000" in out and "3. 002.Afghan_hound" in out


def test_invoke_refuses_a_file_over_the_real_time_limit_before_inference(
    stub, tmp_path, capsys
) -> None:
    stub_target(stub("sagemaker"), {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1})
    stub("sagemaker-runtime")  # nothing queued: no inference may be asked for
    big = noise_png(tmp_path / "big.png", 6.5)
    assert main(["invoke", "dogs", str(jpeg_file(tmp_path / "ok.jpg")), str(big)]) == 1
    err = capsys.readouterr().err
    assert "over the 6 MB payload limit of real-time endpoint 'dogs'" in err
    assert "--async" in err


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda p: p.write_text("not an image"), "not a readable image"),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (lambda p: Image.new("RGB", (8, 8)).save(p, "GIF"), "a GIF image; send JPEG or PNG"),
        (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 50), "not a readable image"),
    ],
)
def test_invoke_refuses_non_images_before_any_request(
    stub, tmp_path, capsys, make, complaint
) -> None:
    stub("sagemaker"), stub("sagemaker-runtime")  # nothing queued
    bad = tmp_path / "bad.jpg"
    make(bad)
    assert main(["invoke", "dogs", str(jpeg_file(tmp_path / "ok.jpg")), str(bad)]) == 1
    assert complaint in capsys.readouterr().err


def test_invoke_a_missing_file_names_it(stub, tmp_path, capsys) -> None:
    stub("sagemaker"), stub("sagemaker-runtime")
    assert main(["invoke", "dogs", str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg: no such file" in capsys.readouterr().err


def test_invoke_an_unknown_endpoint_says_so(stub, tmp_path, capsys) -> None:
    stub("sagemaker").add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        http_status_code=400,
        service_message='Could not find endpoint "nodogs".',
    )
    assert main(["invoke", "nodogs", str(jpeg_file(tmp_path / "a.jpg"))]) == 1
    err = capsys.readouterr().err
    assert "no endpoint named 'nodogs' in us-east-1" in err and "dogbreed deploy" in err


def test_invoke_reports_the_models_own_error(stub, tmp_path, capsys) -> None:
    stub_target(stub("sagemaker"), {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1})
    stub("sagemaker-runtime").add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        http_status_code=424,
        service_message="Received client error (415) from primary",
        response_meta={},
        modeled_fields={"OriginalMessage": "unsupported Content-Type"},
    )
    assert main(["invoke", "dogs", str(jpeg_file(tmp_path / "a.jpg"))]) == 1
    assert "rejected the request: unsupported Content-Type" in capsys.readouterr().err


class StallingRuntime(ThreadingHTTPServer):
    """A sagemaker-runtime endpoint on 127.0.0.1 that counts InvokeEndpoint requests and answers
    none of them until released."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), StallingHandler)
        self.requests: list[str] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class StallingHandler(BaseHTTPRequestHandler):
    server: StallingRuntime

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(self.path)
        self.server.release.wait(timeout=10)
        body = predictions_json([TOP])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stalling_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[StallingRuntime]:
    """The runtime endpoint the launcher's sagemaker-runtime client reaches, with a read timeout
    of 0.5 s instead of 70 s, and the retries a user's AWS config would give it (none set here:
    botocore's own default)."""
    server = StallingRuntime()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    monkeypatch.setattr("dogbreed.launch.session.INVOKE_READ_TIMEOUT_S", 0.5)
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_an_invocation_that_times_out_is_sent_once(
    stub, tmp_path, capsys, stalling_runtime
) -> None:
    """InvokeEndpoint may have reached the model when the answer is late: it is not sent again
    (each run of a serverless endpoint is billed); the user is told (issue 20, item 8)."""
    stub_target(stub("sagemaker"), {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1})
    assert main(["invoke", "dogs", str(jpeg_file(tmp_path / "a.jpg"))]) == 1
    assert stalling_runtime.requests == ["/endpoints/dogs/invocations"]
    err = capsys.readouterr().err
    assert "'dogs' sent no answer" in err and "within 0.5 s" in err and "not sent again" in err


def test_the_runtime_client_waits_past_the_models_60_s_and_never_retries(aws, monkeypatch) -> None:
    """Whatever the user's AWS config says about retries."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("AWS_RETRY_MODE", "legacy")
    config = aws.runtime.meta.config
    assert config.read_timeout == 70
    assert config.retries["total_max_attempts"] == 1


def expected_transform_request(max_payload_mb: int, max_concurrent: int) -> dict:
    """The CreateTransformJob request that TRANSFORM_ARGS sends."""
    return {
        "TransformJobName": "batch-1",
        "ModelName": "batch-1",
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": max_payload_mb,
        "MaxConcurrentTransforms": max_concurrent,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/photos/"}
            },
            "ContentType": "application/x-image",
            "SplitType": "None",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": "s3://bucket/predictions/",
            "Accept": "application/json",
            "AssembleWith": "None",
        },
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
    }


def test_transform_creates_a_model_and_the_job(stub, capsys) -> None:
    sm = stub("sagemaker")
    sm.add_response(
        "create_model",
        {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/m"},
        {
            "ModelName": "batch-1",
            "PrimaryContainer": {
                "Image": SERVE_IMAGE,
                "ModelDataUrl": MODEL_DATA,
                "Environment": {},
            },
            "ExecutionRoleArn": ROLE,
            "Tags": TAGS,
        },
    )
    sm.add_response(
        "create_transform_job",
        {"TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/tj"},
        expected_transform_request(max_payload_mb=6, max_concurrent=4),
    )
    assert main(TRANSFORM_ARGS + ["--max-concurrent", "4"]) == 0
    assert "started transform job batch-1" in capsys.readouterr().out


TRANSFORM_ARGS = [
    "transform",
    "--model-data",
    MODEL_DATA,
    "--image",
    SERVE_IMAGE,
    "--role",
    ROLE,
    "--name",
    "batch-1",
    "--input",
    "s3://bucket/photos/",
    "--output",
    "s3://bucket/predictions/",
    "--instance-type",
    "ml.m5.xlarge",
    "--instance-count",
    "2",
]


@pytest.mark.parametrize(
    ("concurrent", "payload"), [("20", None), ("11", "10"), ("2", "51"), ("-1", None)]
)
def test_transform_refuses_concurrency_times_payload_over_100_mb(
    stub, capsys, concurrent, payload
) -> None:
    stub("sagemaker")  # no responses: not even the model may be created
    args = TRANSFORM_ARGS + ["--max-concurrent", concurrent]
    assert main(args + (["--max-payload-mb", payload] if payload else [])) == 1
    assert "max concurrent transforms" in capsys.readouterr().err


def test_transform_input_prefix_gets_its_slash_and_100_mb_in_flight_is_allowed(stub) -> None:
    """``s3://bucket/photos`` would also read ``photos.zip`` and ``photos-old/``."""
    sm = stub("sagemaker")
    sm.add_response("create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:1:model/m"})
    sm.add_response(
        "create_transform_job",
        {"TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/tj"},
        expected_transform_request(max_payload_mb=10, max_concurrent=10),
    )
    args = [a if a != "s3://bucket/photos/" else "s3://bucket/photos" for a in TRANSFORM_ARGS]
    assert main(args + ["--max-concurrent", "10", "--max-payload-mb", "10"]) == 0


def test_transform_with_an_existing_model_and_wait(stub, monkeypatch, capsys) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    sm = stub("sagemaker")
    sm.add_response(
        "create_transform_job",
        {"TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/tj"},
    )
    described = {
        "TransformJobName": "batch-2",
        "TransformJobArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/tj",
        "ModelName": "dogs",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/p"}}
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": datetime(2026, 1, 1),
    }
    sm.add_response("describe_transform_job", {**described, "TransformJobStatus": "InProgress"})
    sm.add_response(
        "describe_transform_job",
        {
            **described,
            "TransformJobStatus": "Failed",
            "FailureReason": "ClientError: 415 from container",
        },
    )
    args = [
        "transform",
        "--model",
        "dogs",
        "--name",
        "batch-2",
        "--input",
        "s3://b/p",
        "--output",
        "s3://b/o",
        "--wait",
    ]
    assert main(args) == 1
    assert (
        "transform job batch-2 failed: ClientError: 415 from container" in capsys.readouterr().err
    )


def test_an_endpoint_that_fails_to_start_reports_why(stub, capsys, monkeypatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    sm = stub("sagemaker")
    sm.add_response(
        "create_model", {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/dogs"}
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:ec/dogs"},
    )
    sm.add_response(
        "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:e/dogs"}
    )
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    failed = {**endpoint("Failed"), "FailureReason": reason}
    sm.add_response("describe_endpoint", failed, NAME)  # the waiter sees Failed and stops
    sm.add_response("describe_endpoint", failed, NAME)  # the launcher reads the reason
    assert main([*DEPLOY_ARGS, *BOTH_IMAGES]) == 1
    err = capsys.readouterr().err
    assert "endpoint dogs did not come into service" in err and "ping health check" in err
