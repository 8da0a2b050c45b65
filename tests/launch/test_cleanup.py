"""`dogbreed cleanup NAME`: deletes only what dogbreed tagged and nothing else still uses, lists
it, and asks first (issue 20, item 9).

Two kinds of test: moto (a stand-in SageMaker whose state the test then reads back: what really
went) for the account situations, and Stubber (every request exact, checked against botocore's
model) for the order of requests and what moto cannot hold, such as a running transform job.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from dogbreed.launch.cli.main import main
from dogbreed.launch.defaults import TOOL_TAG
from dogbreed.launch.session import Aws

from .conftest import REGION, ROLE, SERVE_IMAGE
from .endpoint_stubs import ARN, NAME, endpoint, stub_config_description

OTHER_TAG = {"Key": "team", "Value": "recommendations"}
SCOPE = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/dogs/variant/AllTraffic",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}
WAKE_ALARM = "dogs-has-backlog-without-capacity"


class Terminal(io.StringIO):
    """stdin as a terminal a user types ``answer`` into."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


# --- against moto: what is left afterwards ---------------------------------------------------


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A moto account the CLI's ``Aws.connect`` reaches (conftest points every client at a closed
    port; moto answers only AWS's own addresses)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with mock_aws():
        connected = Aws.connect(region=REGION)
        monkeypatch.setattr(
            Aws, "connect", classmethod(lambda cls, region=None, profile=None: connected)
        )
        yield connected


def create_model(sm, name: str, tags: list[dict]) -> None:
    container = {"Image": SERVE_IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}
    sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE, Tags=tags)


def create_endpoint(sm, name: str, model: str, tags: list[dict], config: str | None = None) -> None:
    """An endpoint and its own config (named like it unless ``config``), serving ``model``."""
    config = config or name
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[variant], Tags=tags)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=tags)


def names(sm) -> dict[str, set[str]]:
    """What the account holds."""
    return {
        "endpoints": {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]},
        "configs": {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]},
        "models": {m["ModelName"] for m in sm.list_models()["Models"]},
    }


def test_cleanup_leaves_what_dogbreed_did_not_create(account, no_terminal, capsys) -> None:
    """The issue's case: untagged `prod-recommender` and `prod-recommender-b` both serve
    `team-model`. Nothing of theirs goes, with or without --yes."""
    sm = account.sagemaker
    create_model(sm, "team-model", [OTHER_TAG])
    create_endpoint(sm, "prod-recommender", "team-model", [OTHER_TAG])
    create_endpoint(sm, "prod-recommender-b", "team-model", [OTHER_TAG])
    before = names(sm)
    assert main(["cleanup", "prod-recommender"]) == 1
    captured = capsys.readouterr()
    assert names(sm) == before
    assert captured.out.splitlines() == [
        f"keeping {kind} {name}: no dogbreed:created-by tag: dogbreed did not create it"
        for kind, name in (
            ("endpoint", "prod-recommender"),
            ("endpoint config", "prod-recommender"),
            ("model", "team-model"),
        )
    ]
    assert "nothing deleted for prod-recommender" in captured.err
    assert main(["cleanup", "prod-recommender", "--yes"]) == 1
    assert names(sm) == before


def test_cleanup_asks_and_keeps_a_model_another_config_uses(account, monkeypatch, capsys) -> None:
    """Ours: endpoint, config and model `dogs`; someone's untagged config `canary` also serves
    model `dogs`. Without a terminal: exit 2, nothing deleted. With one: the list, a question,
    and on `y` the endpoint and config go; the model stays."""
    sm = account.sagemaker
    create_model(sm, "dogs", [TOOL_TAG])
    create_endpoint(sm, "dogs", "dogs", [TOOL_TAG])
    create_endpoint(sm, "dogs-canary", "dogs", [OTHER_TAG], config="canary")
    before = names(sm)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["cleanup", "dogs"]) == 2
    captured = capsys.readouterr()
    assert names(sm) == before
    assert "stdin is not a terminal" in captured.err and "--yes" in captured.err
    listing = [
        "will delete endpoint dogs",
        "will delete endpoint config dogs",
        "keeping model dogs: used by endpoint config canary",
    ]
    assert captured.out.splitlines() == listing
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["cleanup", "dogs"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:3] == listing
    assert out.splitlines()[3:] == [
        "delete these 2? [y/N] deleted endpoint dogs",
        "deleted endpoint config dogs",
    ]
    assert names(sm) == {
        "endpoints": {"dogs-canary"},
        "configs": {"canary"},
        "models": {"dogs"},
    }


def test_cleanup_keeps_a_config_another_endpoint_serves(account, no_terminal, capsys) -> None:
    sm = account.sagemaker
    create_model(sm, "dogs", [TOOL_TAG])
    create_endpoint(sm, "dogs", "dogs", [TOOL_TAG])
    sm.create_endpoint(EndpointName="dogs-copy", EndpointConfigName="dogs", Tags=[TOOL_TAG])
    assert main(["cleanup", "dogs", "--yes"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "will delete endpoint dogs",
        "keeping endpoint config dogs: used by endpoint dogs-copy",
        "keeping model dogs: used by endpoint config dogs",
        "deleted endpoint dogs",
    ]
    assert names(sm) == {"endpoints": {"dogs-copy"}, "configs": {"dogs"}, "models": {"dogs"}}


def test_declining_deletes_nothing(account, monkeypatch, capsys) -> None:
    sm = account.sagemaker
    create_model(sm, "dogs", [TOOL_TAG])
    create_endpoint(sm, "dogs", "dogs", [TOOL_TAG])
    monkeypatch.setattr("sys.stdin", Terminal("\n"))
    assert main(["cleanup", "dogs"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "delete these 3? [y/N] nothing deleted"
    assert names(sm) == {"endpoints": {"dogs"}, "configs": {"dogs"}, "models": {"dogs"}}


def test_deploy_tags_the_model_config_and_endpoint_it_creates(account) -> None:
    """What cleanup relies on: every resource deploy makes carries the tag."""
    from dogbreed.launch.endpoints.deploy import EndpointSpec, deploy, made_by_tool

    spec = EndpointSpec("dogs", SERVE_IMAGE, "s3://bucket/model.tar.gz", ROLE)
    deploy(account, spec, wait=False)
    sm = account.sagemaker
    arns = (
        sm.describe_model(ModelName="dogs")["ModelArn"],
        sm.describe_endpoint_config(EndpointConfigName="dogs")["EndpointConfigArn"],
        sm.describe_endpoint(EndpointName="dogs")["EndpointArn"],
    )
    assert all(made_by_tool(sm, arn) for arn in arns)


# --- stubbed: the exact requests -------------------------------------------------------------


def tagged(sm: Stubber, arn: str, ours: bool = True) -> None:
    sm.add_response(
        "list_tags", {"Tags": [TOOL_TAG] if ours else [OTHER_TAG]}, {"ResourceArn": arn}
    )


def describe_model(sm: Stubber, name: str) -> None:
    sm.add_response(
        "describe_model",
        {"ModelName": name, "ModelArn": ARN + name, "CreationTime": datetime(2026, 1, 1)},
        {"ModelName": name},
    )


def no_model(sm: Stubber, name: str) -> None:
    sm.add_client_error(
        "describe_model",
        service_error_code="ValidationException",
        service_message=f'Could not find model "{name}".',
        http_status_code=400,
        expected_params={"ModelName": name},
    )


def summary(name: str) -> dict:
    created = datetime(2026, 1, 1)
    return {
        "EndpointName": name,
        "EndpointArn": ARN + name,
        "CreationTime": created,
        "LastModifiedTime": created,
        "EndpointStatus": "InService",
    }


def other_endpoint(sm: Stubber, name: str, config: str) -> None:
    sm.add_response(
        "describe_endpoint",
        {**endpoint("InService"), "EndpointName": name, "EndpointConfigName": config},
        {"EndpointName": name},
    )


def other_config(sm: Stubber, name: str, model: str) -> None:
    sm.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": name,
            "EndpointConfigArn": ARN + name,
            "CreationTime": datetime(2026, 1, 1),
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model}],
        },
        {"EndpointConfigName": name},
    )


def transform_jobs(sm: Stubber, jobs: dict[str, str]) -> None:
    """ListTransformJobs (InProgress) and DescribeTransformJob: each job and its model."""
    created = datetime(2026, 1, 1)
    sm.add_response(
        "list_transform_jobs",
        {
            "TransformJobSummaries": [
                {
                    "TransformJobName": job,
                    "TransformJobArn": ARN + job,
                    "CreationTime": created,
                    "TransformJobStatus": "InProgress",
                }
                for job in jobs
            ]
        },
        {"StatusEquals": "InProgress"},
    )
    for job, model in jobs.items():
        sm.add_response(
            "describe_transform_job",
            {
                "TransformJobName": job,
                "TransformJobArn": ARN + job,
                "TransformJobStatus": "InProgress",
                "ModelName": model,
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}
                    }
                },
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                "CreationTime": created,
            },
            {"TransformJobName": job},
        )


def autoscaling(stub, target: bool, alarm_description: str | None) -> None:
    """DescribeScalableTargets and DescribeAlarms for the endpoint `dogs`."""
    found = {
        **SCOPE,
        "MinCapacity": 0,
        "MaxCapacity": 2,
        "RoleARN": ROLE,
        "CreationTime": datetime(2026, 1, 1),
    }
    stub("application-autoscaling").add_response(
        "describe_scalable_targets",
        {"ScalableTargets": [found] if target else []},
        {
            "ServiceNamespace": "sagemaker",
            "ResourceIds": [SCOPE["ResourceId"]],
            "ScalableDimension": SCOPE["ScalableDimension"],
        },
    )
    alarms = [{"AlarmName": WAKE_ALARM, "AlarmDescription": alarm_description}]
    stub("cloudwatch").add_response(
        "describe_alarms",
        {"MetricAlarms": alarms if alarm_description is not None else []},
        {"AlarmNames": [WAKE_ALARM]},
    )


def test_cleanup_deletes_target_alarm_endpoint_config_and_models(stub, capsys) -> None:
    """Ours and unused: the endpoint `dogs`, its config (serving model `dogs-v1`), the models
    `dogs` and `dogs-v1`, the scalable target and the wake alarm. Another endpoint, config and
    transform job are looked at, and use none of them."""
    sm = stub("sagemaker")
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    stub_config_description(sm, "dogs-v1")
    describe_model(sm, "dogs")
    describe_model(sm, "dogs-v1")
    for arn in (ARN + "e", ARN + "c", ARN + "dogs", ARN + "dogs-v1"):
        tagged(sm, arn)
    sm.add_response("list_endpoints", {"Endpoints": [summary("dogs"), summary("cats")]}, {})
    other_endpoint(sm, "cats", "cats")
    configs = [
        {
            "EndpointConfigName": c,
            "EndpointConfigArn": ARN + c,
            "CreationTime": datetime(2026, 1, 1),
        }
        for c in ("cats", "dogs")
    ]
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": configs}, {})
    other_config(sm, "cats", "cats")
    transform_jobs(sm, {"batch-1": "cats"})
    autoscaling(stub, True, "wake dogs from 0 instances when async requests wait (dogbreed)")
    stub("application-autoscaling").add_response("deregister_scalable_target", {}, SCOPE)
    stub("cloudwatch").add_response("delete_alarms", {}, {"AlarmNames": [WAKE_ALARM]})
    sm.add_response("delete_endpoint", {}, NAME)
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "dogs"})
    sm.add_response("delete_model", {}, {"ModelName": "dogs"})
    sm.add_response("delete_model", {}, {"ModelName": "dogs-v1"})
    assert main(["cleanup", "dogs", "--yes"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "will delete autoscaling target endpoint/dogs/variant/AllTraffic and its policies",
        f"will delete CloudWatch alarm {WAKE_ALARM}",
        "will delete endpoint dogs",
        "will delete endpoint config dogs",
        "will delete model dogs",
        "will delete model dogs-v1",
        "deleted autoscaling target endpoint/dogs/variant/AllTraffic",
        f"deleted CloudWatch alarm {WAKE_ALARM}",
        "deleted endpoint dogs",
        "deleted endpoint config dogs",
        "deleted model dogs",
        "deleted model dogs-v1",
    ]


def test_cleanup_keeps_a_model_a_running_transform_job_uses(stub, no_terminal, capsys) -> None:
    """A half-finished deploy (no endpoint): config and model `dogs`, ours; the model is in use
    by a running transform job, so only the config goes. An alarm of the wake alarm's name that
    dogbreed did not write stays too."""
    sm = stub("sagemaker")
    sm.add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        service_message='Could not find endpoint "dogs".',
        http_status_code=400,
        expected_params=NAME,
    )
    stub_config_description(sm, "dogs")
    describe_model(sm, "dogs")
    tagged(sm, ARN + "c")
    tagged(sm, ARN + "dogs")
    sm.add_response("list_endpoints", {"Endpoints": []}, {})
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": []}, {})
    transform_jobs(sm, {"nightly-batch": "dogs"})
    autoscaling(stub, False, "someone else's alarm")
    assert main(["cleanup", "dogs"]) == 2  # no terminal, no --yes: asks no one, deletes nothing
    assert capsys.readouterr().out.splitlines() == [
        "will delete endpoint config dogs",
        "keeping model dogs: used by running transform job nightly-batch",
    ]


def test_cleanup_of_nothing_says_so(stub, capsys) -> None:
    sm = stub("sagemaker")
    missing = {"service_error_code": "ValidationException", "http_status_code": 400}
    sm.add_client_error(
        "describe_endpoint", service_message='Could not find endpoint "dogs".', **missing
    )
    sm.add_client_error(
        "describe_endpoint_config",
        service_message='Could not find endpoint configuration "dogs".',
        **missing,
    )
    no_model(sm, "dogs")
    autoscaling(stub, False, None)
    assert main(["cleanup", "dogs"]) == 0
    assert capsys.readouterr().out.strip() == "nothing named dogs left"


def test_a_resource_that_goes_between_the_list_and_the_delete_is_skipped(stub, capsys) -> None:
    sm = stub("sagemaker")
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    stub_config_description(sm, "dogs")
    describe_model(sm, "dogs")
    for arn in (ARN + "e", ARN + "c", ARN + "dogs"):
        tagged(sm, arn)
    sm.add_response("list_endpoints", {"Endpoints": [summary("dogs")]}, {})
    sm.add_response("list_endpoint_configs", {"EndpointConfigs": []}, {})
    transform_jobs(sm, {})
    autoscaling(stub, False, None)
    sm.add_client_error(
        "delete_endpoint",
        service_error_code="ValidationException",
        service_message='Could not find endpoint "dogs".',
        http_status_code=400,
        expected_params=NAME,
    )
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": "dogs"})
    sm.add_response("delete_model", {}, {"ModelName": "dogs"})
    assert main(["cleanup", "dogs", "--yes"]) == 0
    assert capsys.readouterr().out.splitlines()[3:] == [
        "deleted endpoint config dogs",
        "deleted model dogs",
    ]


def test_another_error_stops_cleanup(stub, capsys) -> None:
    stub("sagemaker").add_client_error(
        "describe_endpoint",
        service_error_code="AccessDeniedException",
        service_message="not authorized to perform: sagemaker:DescribeEndpoint",
        http_status_code=400,
        expected_params=NAME,
    )
    assert main(["cleanup", "dogs", "--yes"]) == 1
    assert "sagemaker:DescribeEndpoint" in capsys.readouterr().err


def test_only_a_not_found_error_counts_as_gone() -> None:
    from dogbreed.launch.endpoints.deploy import missing

    gone = ClientError(
        {"Error": {"Code": "ValidationException", "Message": 'Could not find model "dogs".'}},
        "DescribeModel",
    )
    bad = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "1 validation error detected"}},
        "DescribeModel",
    )
    assert missing(gone) and not missing(bad)
