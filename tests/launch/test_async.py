"""deploy --async (AsyncInferenceConfig, server limits, scale to zero with AWS's wake-up alarm) and
invoke against an async endpoint (upload, InvokeEndpointAsync, bounded polling of S3)."""

from __future__ import annotations

import hashlib

import pytest

from dogbreed.launch.cli.main import main
from dogbreed.launch.endpoints.async_endpoint import AsyncSpec, beside
from dogbreed.launch.endpoints.async_invoke import invoke_async
from dogbreed.launch.endpoints.deploy import EndpointSpec, server_environment
from dogbreed.launch.endpoints.invoke import Target, read_image
from dogbreed.launch.errors import LaunchError
from dogbreed.serve.config import ServerSettings

from .conftest import ROLE
from .endpoint_stubs import (
    ARN,
    DEPLOY_ARGS,
    MODEL_DATA,
    NAME,
    SLIM_IMAGE,
    TOP,
    endpoint,
    predictions_json,
    streaming,
    stub_deploy,
    stub_target,
)
from .test_endpoint import BOTH_IMAGES, jpeg_file

SUCCESS = "arn:aws:sns:us-east-1:123456789012:dogs-done"
ERROR = "arn:aws:sns:us-east-1:123456789012:dogs-failed"
SERVER_LIMITS = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "3600"}
OUTPUT = "s3://bucket/dogs/output/"
ASYNC_CONFIG = {
    "OutputConfig": {
        "S3OutputPath": OUTPUT,
        "S3FailurePath": "s3://bucket/dogs/failures/",
        "NotificationConfig": {"SuccessTopic": SUCCESS, "ErrorTopic": ERROR},
    },
    "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
}
SCOPE = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/dogs/variant/AllTraffic",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}
NO_SUCH_KEY = {"service_error_code": "NoSuchKey", "http_status_code": 404}


def test_async_deploy_scales_to_zero_with_the_wake_up_alarm(stub, capsys, monkeypatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)  # the waiter's delay
    sm, scaling = stub("sagemaker"), stub("application-autoscaling")
    variant = {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1}
    stub_deploy(sm, SLIM_IMAGE, variant, SERVER_LIMITS, AsyncInferenceConfig=ASYNC_CONFIG)
    sm.add_response("describe_endpoint", endpoint("Creating"), NAME)
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    scaling.add_response(
        "register_scalable_target", {}, {**SCOPE, "MinCapacity": 0, "MaxCapacity": 3}
    )
    backlog = {
        "MetricName": "ApproximateBacklogSizePerInstance",
        "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": "dogs"}],
        "Statistic": "Average",
    }
    scaling.add_response(
        "put_scaling_policy",
        {"PolicyARN": ARN + "backlog", "Alarms": []},
        {
            "PolicyName": "dogs-backlog",
            **SCOPE,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 2.0,
                "CustomizedMetricSpecification": backlog,
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )
    wake = "dogs-has-backlog-without-capacity"
    scaling.add_response(
        "put_scaling_policy",
        {"PolicyARN": ARN + "wake", "Alarms": []},
        {
            "PolicyName": wake,
            **SCOPE,
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": "Average",
                "Cooldown": 300,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
            },
        },
    )
    stub("cloudwatch").add_response(
        "put_metric_alarm",
        {},
        {
            "AlarmName": wake,
            "AlarmDescription": "wake dogs from 0 instances when async requests wait (dogbreed)",
            "MetricName": "HasBacklogWithoutCapacity",
            "Namespace": "AWS/SageMaker",
            "Statistic": "Average",
            "Dimensions": [{"Name": "EndpointName", "Value": "dogs"}],
            "Period": 60,
            "EvaluationPeriods": 2,
            "DatapointsToAlarm": 2,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "missing",
            "AlarmActions": [ARN + "wake"],
        },
    )
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    args = ["--instance-type", "ml.c5.xlarge", "--async", "--output-s3", "s3://bucket/dogs/output"]
    args += ["--success-topic", SUCCESS, "--error-topic", ERROR]
    args += ["--max-concurrent-invocations-per-instance", "4"]
    args += ["--autoscale-max", "3", "--min-instances", "0", "--target-backlog", "2"]
    assert main([*DEPLOY_ARGS, *BOTH_IMAGES, *args]) == 0
    assert "to async endpoint dogs (ml.c5.xlarge)" in capsys.readouterr().out


def test_the_server_takes_the_limits_an_async_deploy_sets() -> None:
    spec = EndpointSpec("dogs", SLIM_IMAGE, MODEL_DATA, ROLE, asynchronous=AsyncSpec(OUTPUT))
    settings = ServerSettings.from_env(server_environment(spec), cpus=2, gpus=0)
    assert settings.max_payload_mb == 1024 and settings.timeout_s == 3600


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--async"], "--async needs --output-s3"),
        (["--output-s3", OUTPUT], "--output-s3 apply to --async endpoints only"),
        (["--async", "--output-s3", "bucket/out"], "--output-s3 must be s3://bucket/prefix"),
        (
            ["--async", "--output-s3", OUTPUT, "--error-topic", "dogs-failed"],
            "--error-topic must be an SNS topic ARN",
        ),
        (
            ["--async", "--output-s3", OUTPUT, "--max-concurrent-invocations-per-instance", "0"],
            "SageMaker takes 1-1000",
        ),
        (
            ["--autoscale-max", "2", "--min-instances", "0"],
            "only --async endpoints scale to 0",
        ),
        (
            ["--async", "--output-s3", OUTPUT, "--env", "SAGEMAKER_MAX_PAYLOAD_IN_MB=2048"],
            "async endpoints take 1-1024",
        ),
    ],
)
def test_async_mistakes_are_refused_before_any_request(stub, capsys, args, complaint) -> None:
    stub("sagemaker"), stub("application-autoscaling")  # nothing queued
    assert main([*DEPLOY_ARGS, *BOTH_IMAGES, *args]) == 1
    assert complaint in capsys.readouterr().err


def stub_async_invoke(stub, data: bytes, input_uri: str, polls_before_output: int) -> None:
    """Upload, InvokeEndpointAsync, then ``polls_before_output`` empty polls of the output and
    failure locations before the output appears."""
    bucket, _, key = input_uri.removeprefix("s3://").partition("/")
    s3 = stub("s3")
    s3.add_response(
        "put_object",
        {"ETag": '"1"'},
        {"Bucket": bucket, "Key": key, "Body": data, "ContentType": "image/jpeg"},
    )
    stub("sagemaker-runtime").add_response(
        "invoke_endpoint_async",
        {
            "InferenceId": "i-1",
            "OutputLocation": OUTPUT + "i-1.out",
            "FailureLocation": "s3://bucket/dogs/failures/i-1-error.out",
        },
        {
            "EndpointName": "dogs",
            "InputLocation": input_uri,
            "ContentType": "image/jpeg",
            "Accept": "application/json",
            "CustomAttributes": "top_k=3",
            "InvocationTimeoutSeconds": 600,
            "RequestTTLSeconds": 600,
        },
    )
    output = {"Bucket": "bucket", "Key": "dogs/output/i-1.out"}
    failure = {"Bucket": "bucket", "Key": "dogs/failures/i-1-error.out"}
    for _ in range(polls_before_output):
        s3.add_client_error("get_object", expected_params=output, **NO_SUCH_KEY)
        s3.add_client_error("get_object", expected_params=failure, **NO_SUCH_KEY)
    s3.add_response("get_object", {"Body": streaming(predictions_json([TOP[:3]]))}, output)


@pytest.mark.parametrize(
    ("given", "prefix"),
    [([], "s3://bucket/dogs/input/"), (["--input-s3", "s3://inbox/dogs"], "s3://inbox/dogs/")],
)
def test_invoke_async_uploads_invokes_and_waits_for_the_output(
    stub, tmp_path, capsys, monkeypatch, given, prefix
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("time.sleep", sleeps.append)
    jpg = jpeg_file(tmp_path / "dog.jpg")
    data = jpg.read_bytes()
    stub_target(
        stub("sagemaker"),
        {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1},
        SERVER_LIMITS,
        AsyncInferenceConfig=ASYNC_CONFIG,
    )
    key = hashlib.sha256(data).hexdigest()[:32]
    stub_async_invoke(stub, data, f"{prefix}{key}.jpg", polls_before_output=2)
    args = ["invoke", "dogs", str(jpg), "--top-k", "3", "--timeout", "600", *given]
    assert main(args) == 0
    assert sleeps == [5.0, 5.0]
    captured = capsys.readouterr()
    assert f"{jpg}:\n  1. 001.Affenpinscher" in captured.out
    assert f"uploading to {prefix}; waiting up to 600 s" in captured.err


def test_invoke_async_reports_the_failure_sagemaker_wrote(stub, tmp_path, capsys) -> None:
    jpg = jpeg_file(tmp_path / "dog.jpg")
    stub_target(stub("sagemaker"), AsyncInferenceConfig=ASYNC_CONFIG)
    s3 = stub("s3")
    s3.add_response("put_object", {"ETag": '"1"'})
    stub("sagemaker-runtime").add_response(
        "invoke_endpoint_async",
        {"OutputLocation": OUTPUT + "i-2.out", "FailureLocation": "s3://bucket/f/i-2-error.out"},
    )
    s3.add_client_error("get_object", **NO_SUCH_KEY)
    s3.add_response(
        "get_object",
        {"Body": streaming(b"Received client error (413) from primary: payload too large")},
        {"Bucket": "bucket", "Key": "f/i-2-error.out"},
    )
    assert main(["invoke", "dogs", str(jpg)]) == 1
    err = capsys.readouterr().err
    assert f"'dogs' failed on {jpg}: Received client error (413)" in err


def test_invoke_async_gives_up_at_its_timeout(aws, stub, tmp_path) -> None:
    """With nothing ever written, the wait ends at the bound: probes at 0, 5, 10 and 12 s."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    s3 = stub("s3")
    s3.add_response("put_object", {"ETag": '"1"'})
    stub("sagemaker-runtime").add_response(
        "invoke_endpoint_async",
        {"OutputLocation": OUTPUT + "i-3.out", "FailureLocation": "s3://bucket/f/i-3-error.out"},
    )
    for _ in range(4 * 2):
        s3.add_client_error("get_object", **NO_SUCH_KEY)
    image = read_image(jpeg_file(tmp_path / "dog.jpg"))
    target = Target("dogs", "async", 1024, OUTPUT)
    answers = invoke_async(
        aws,
        target,
        [image],
        "s3://bucket/in/",
        timeout_s=12,
        clock=lambda: now[0],
        sleep=sleep,
    )
    with pytest.raises(
        LaunchError, match=r"gave up after 12 s waiting for the result of .*i-3.out"
    ):
        next(answers)
    assert now[0] == 12


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("s3://bucket/dogs/output/", "s3://bucket/dogs/input/"),
        ("s3://bucket/dogs/output", "s3://bucket/dogs/input/"),
        ("s3://bucket/output/", "s3://bucket/input/"),
        ("s3://bucket/", "s3://bucket/input/"),
    ],
)
def test_inputs_go_beside_the_output_prefix(output: str, expected: str) -> None:
    assert beside(output, "input") == expected
