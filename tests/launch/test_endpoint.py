"""deploy / invoke / transform / cleanup: exact requests, and errors a user can act on."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import pytest
from botocore.response import StreamingBody
from PIL import Image

from dogbreed.cli import main

from .conftest import ROLE, SERVE_IMAGE

MODEL_DATA = "s3://bucket/runs/dogbreed-train-1/output/model.tar.gz"
NAME = {"EndpointName": "dogs"}
DEPLOY_ARGS = [
    "deploy",
    "--model-data",
    MODEL_DATA,
    "--image",
    SERVE_IMAGE,
    "--role",
    ROLE,
    "--name",
    "dogs",
]


def endpoint(status: str) -> dict:
    return {
        "EndpointName": "dogs",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/e",
        "EndpointConfigName": "dogs",
        "EndpointStatus": status,
        "CreationTime": datetime(2026, 1, 1),
        "LastModifiedTime": datetime(2026, 1, 1),
    }


def test_deploy_with_autoscaling(stub, capsys, monkeypatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)  # the waiter's delay
    sm, scaling = stub("sagemaker"), stub("application-autoscaling")
    sm.add_response(
        "create_model",
        {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/m"},
        {
            "ModelName": "dogs",
            "PrimaryContainer": {
                "Image": SERVE_IMAGE,
                "ModelDataUrl": MODEL_DATA,
                "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
            },
            "ExecutionRoleArn": ROLE,
        },
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/c"},
        {
            "EndpointConfigName": "dogs",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "dogs",
                    "InstanceType": "ml.c5.xlarge",
                    "InitialInstanceCount": 1,
                }
            ],
        },
    )
    sm.add_response(
        "create_endpoint",
        {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/e"},
        {"EndpointName": "dogs", "EndpointConfigName": "dogs"},
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
        {"PolicyARN": "arn:aws:sagemaker:us-east-1:123456789012:thing/p", "Alarms": []},
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


def test_deploy_from_a_training_job_uses_its_model_artifact(stub) -> None:
    sm = stub("sagemaker")
    sm.add_response(
        "describe_training_job",
        {
            "TrainingJobName": "dogbreed-train-1",
            "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/t",
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
    sm.add_response(
        "create_model",
        {"ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/m"},
        {
            "ModelName": "dogs",
            "PrimaryContainer": {
                "Image": SERVE_IMAGE,
                "ModelDataUrl": MODEL_DATA,
                "Environment": {},
            },
            "ExecutionRoleArn": ROLE,
        },
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/c"},
    )
    sm.add_response(
        "create_endpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/e"}
    )
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    args = [
        "deploy",
        "--job",
        "dogbreed-train-1",
        "--image",
        SERVE_IMAGE,
        "--role",
        ROLE,
        "--name",
        "dogs",
        "--no-wait",
    ]
    assert main(args) == 0


def test_cleanup_deletes_target_endpoint_config_and_model(stub, capsys) -> None:
    sm, scaling = stub("sagemaker"), stub("application-autoscaling")
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    sm.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "dogs",
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:thing/c",
            "CreationTime": datetime(2026, 1, 1),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "dogs-v1"}],
        },
        {"EndpointConfigName": "dogs"},
    )
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/dogs/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    scaling.add_response("deregister_scalable_target", {}, target)
    sm.add_response("delete_endpoint", {}, NAME)
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "dogs"})
    sm.add_response("delete_model", {}, {"ModelName": "dogs"})
    sm.add_response("delete_model", {}, {"ModelName": "dogs-v1"})
    assert main(["cleanup", "dogs"]) == 0
    out = capsys.readouterr().out
    for line in (
        "autoscaling target",
        "endpoint dogs",
        "endpoint config dogs",
        "model dogs",
        "model dogs-v1",
    ):
        assert f"deleted {line}" in out


def test_cleanup_of_a_half_deployed_endpoint_skips_what_is_missing(stub, capsys) -> None:
    sm, scaling = stub("sagemaker"), stub("application-autoscaling")
    missing = {"service_error_code": "ValidationException", "http_status_code": 400}
    sm.add_client_error(
        "describe_endpoint", service_message='Could not find endpoint "dogs".', **missing
    )
    sm.add_client_error(
        "describe_endpoint_config",
        service_message="Could not find endpoint configuration",
        **missing,
    )
    scaling.add_client_error(
        "deregister_scalable_target",
        service_error_code="ObjectNotFoundException",
        service_message="No scalable target registered",
        http_status_code=400,
    )
    sm.add_client_error(
        "delete_endpoint", service_message='Could not find endpoint "dogs".', **missing
    )
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "dogs"})
    sm.add_response("delete_model", {}, {"ModelName": "dogs"})
    assert main(["cleanup", "dogs"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == [
        "deleted endpoint config dogs",
        "deleted model dogs",
    ]


def jpeg_file(path: Path, size=(48, 40)) -> Path:
    Image.new("RGB", size, (120, 80, 40)).save(path, "JPEG")
    return path


def predictions_body(rows: list[list[dict]]) -> StreamingBody:
    data = json.dumps({"predictions": rows}).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def test_invoke_sends_each_image_and_prints_the_top_k(stub, tmp_path, capsys) -> None:
    png = tmp_path / "dog.png"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(png, "PNG")
    jpg = jpeg_file(tmp_path / "dog.jpg")
    runtime = stub("sagemaker-runtime")
    top = [
        {"label": "001.Affenpinscher", "class_index": 0, "probability": 0.7},
        {"label": "003.Airedale_terrier", "class_index": 2, "probability": 0.2},
        {"label": "002.Afghan_hound", "class_index": 1, "probability": 0.1},
    ]
    for path, content_type in ((png, "image/png"), (jpg, "image/jpeg")):
        runtime.add_response(
            "invoke_endpoint",
            {"Body": predictions_body([top]), "ContentType": "application/json"},
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
    stub("sagemaker-runtime")  # nothing queued
    bad = tmp_path / "bad.jpg"
    make(bad)
    assert main(["invoke", "dogs", str(jpeg_file(tmp_path / "ok.jpg")), str(bad)]) == 1
    assert complaint in capsys.readouterr().err


def test_invoke_a_missing_file_names_it(stub, tmp_path, capsys) -> None:
    stub("sagemaker-runtime")
    assert main(["invoke", "dogs", str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg: no such file" in capsys.readouterr().err


def test_invoke_an_unknown_endpoint_says_so(stub, tmp_path, capsys) -> None:
    stub("sagemaker-runtime").add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        http_status_code=400,
        service_message="Endpoint nodogs of account 123456789012 not found.",
    )
    assert main(["invoke", "nodogs", str(jpeg_file(tmp_path / "a.jpg"))]) == 1
    err = capsys.readouterr().err
    assert "no endpoint named 'nodogs' in us-east-1" in err and "dogbreed deploy" in err


def test_invoke_reports_the_models_own_error(stub, tmp_path, capsys) -> None:
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
    assert main(DEPLOY_ARGS) == 1
    err = capsys.readouterr().err
    assert "endpoint dogs did not come into service" in err and "ping health check" in err
