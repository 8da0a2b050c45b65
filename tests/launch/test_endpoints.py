"""`dogbreed endpoints`: the live endpoints this tool made (by its tag), their kind, instances,
age and cost, with a total; an untagged endpoint is left out. Stubbed, validated requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from dogbreed.launch.cli.main import main
from dogbreed.launch.defaults import TOOL_TAG
from dogbreed.launch.endpoints.async_endpoint import AsyncSpec
from dogbreed.launch.endpoints.deploy import EndpointSpec, endpoint_config_request
from dogbreed.launch.endpoints.listing import endpoint_table, kind_of, tool_endpoints
from dogbreed.launch.endpoints.prices import HOURLY_USD, hourly_price
from dogbreed.launch.endpoints.serverless import ServerlessSpec

from .conftest import ROLE, SERVE_IMAGE

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/"
OTHER_TAG = {"Key": "team", "Value": "vision"}


def summary(name: str, age: timedelta) -> dict[str, Any]:
    created = NOW - age
    return {
        "EndpointName": name,
        "EndpointArn": ARN + name,
        "CreationTime": created,
        "LastModifiedTime": created,
        "EndpointStatus": "InService",
    }


def stub_endpoint(
    sm: Stubber,
    item: dict[str, Any],
    variant: dict[str, Any],
    live: dict[str, Any],
    **config: Any,
) -> None:
    """ListTags (ours), DescribeEndpoint (``live`` variant fields), DescribeEndpointConfig."""
    name = item["EndpointName"]
    sm.add_response("list_tags", {"Tags": [OTHER_TAG, TOOL_TAG]}, {"ResourceArn": ARN + name})
    sm.add_response(
        "describe_endpoint",
        {
            **item,
            "EndpointConfigName": f"{name}-config",
            "ProductionVariants": [{"VariantName": "AllTraffic", **live}],
        },
        {"EndpointName": name},
    )
    sm.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": f"{name}-config",
            "EndpointConfigArn": f"{ARN}{name}-config",
            "CreationTime": item["CreationTime"],
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": name, **variant}],
            **config,
        },
        {"EndpointConfigName": f"{name}-config"},
    )


def list_endpoints(sm: Stubber, items: list[dict[str, Any]]) -> None:
    sm.add_response(
        "list_endpoints",
        {"Endpoints": items},
        {"SortBy": "CreationTime", "SortOrder": "Ascending"},
    )


def invocations(
    cloudwatch: Stubber,
    name: str,
    points: list[dict[str, Any]],
    start: Any = NOW - timedelta(days=1),
    end: Any = NOW,
) -> None:
    """GetMetricStatistics: the endpoint's Invocations summed over the last day."""
    cloudwatch.add_response(
        "get_metric_statistics",
        {"Label": "Invocations", "Datapoints": points},
        {
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocations",
            "Dimensions": [
                {"Name": "EndpointName", "Value": name},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
            "StartTime": start,
            "EndTime": end,
            "Period": 86400,
            "Statistics": ["Sum"],
        },
    )


def test_endpoints_lists_real_time_serverless_and_async_ones_with_their_costs(stub, aws) -> None:
    sm, cloudwatch = stub("sagemaker"), stub("cloudwatch")
    prod = summary("dogbreed-prod", timedelta(days=3, hours=4))
    serverless = summary("dogbreed-cheap", timedelta(hours=5, minutes=12))
    queued = summary("dogbreed-async", timedelta(minutes=7))
    gpu = summary("dogbreed-gpu", timedelta(hours=2))
    theirs = summary("someone-elses", timedelta(days=40))
    list_endpoints(sm, [prod, theirs, serverless, queued, gpu])
    stub_endpoint(
        sm,
        prod,
        {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1},
        {"CurrentInstanceCount": 2, "DesiredInstanceCount": 2},
    )
    invocations(cloudwatch, "dogbreed-prod", [])  # 3 days old: is it used?
    sm.add_response("list_tags", {"Tags": [OTHER_TAG]}, {"ResourceArn": ARN + "someone-elses"})
    stub_endpoint(
        sm,
        serverless,
        {"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}},
        {"CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}},
    )
    stub_endpoint(
        sm,
        queued,
        {"InstanceType": "ml.c5.xlarge", "InitialInstanceCount": 1},
        {"CurrentInstanceCount": 0, "DesiredInstanceCount": 0},
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://bucket/async/"}},
    )
    stub_endpoint(
        sm,
        gpu,
        {"InstanceType": "ml.g4dn.xlarge", "InitialInstanceCount": 1},
        {"CurrentInstanceCount": 1, "DesiredInstanceCount": 1},
    )
    lines = endpoint_table(tool_endpoints(aws, NOW), aws.region, NOW)
    assert lines[0].split() == [
        "NAME",
        "STATUS",
        "KIND",
        "INSTANCE",
        "COUNT",
        "AGE",
        "PER",
        "HOUR",
        "PER",
        "MONTH",
    ]
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert set(rows) == {"dogbreed-prod", "dogbreed-cheap", "dogbreed-async", "dogbreed-gpu"}
    prod_hourly = 2 * HOURLY_USD["ml.m5.large"]
    assert rows["dogbreed-prod"].split() == [
        "dogbreed-prod",
        "InService",
        "real-time",
        "ml.m5.large",
        "2",
        "3d",
        "4h",
        f"${prod_hourly:.3f}",
        f"${prod_hourly * 720:.2f}",
        "IDLE:",
        "no",
        "invocations",
        "in",
        "24",
        "h",
    ]
    assert rows["dogbreed-cheap"].split()[1:] == [
        "InService",
        "serverless",
        "-",
        "0",
        "5h",
        "12m",
        "per",
        "request",
        "(2048",
        "MB)",
        "per",
        "request",
    ]
    assert rows["dogbreed-async"].split()[1:] == [
        "InService",
        "async",
        "ml.c5.xlarge",
        "0",
        "7m",
        "$0.000",
        "$0.00",
    ]
    assert rows["dogbreed-gpu"].split()[1:] == [
        "InService",
        "real-time",
        "ml.g4dn.xlarge",
        "1",
        "2h",
        "0m",
        "unknown",
        "unknown",
    ]
    assert lines[5] == (
        f"total: ${prod_hourly:.3f}/hour, ${prod_hourly * 720:.2f}/month for 2 endpoint(s); "
        "1 at an unknown price (prices known: some us-east-1 types); "
        "1 serverless, billed per request"
    )
    assert lines[6] == "remove an idle endpoint with: dogbreed cleanup NAME"


def test_the_command_with_only_untagged_endpoints_lists_none(stub, capsys) -> None:
    sm = stub("sagemaker")
    list_endpoints(sm, [summary("someone-elses", timedelta(days=40))])
    sm.add_response("list_tags", {"Tags": [OTHER_TAG]}, {"ResourceArn": ARN + "someone-elses"})
    assert main(["endpoints"]) == 0
    assert capsys.readouterr().out.strip() == "no live endpoints made by dogbreed in us-east-1"


def test_the_command_checks_the_last_days_invocations_of_an_old_endpoint(stub, capsys) -> None:
    sm, cloudwatch = stub("sagemaker"), stub("cloudwatch")
    old = summary("dogbreed-busy", timedelta(days=400))
    list_endpoints(sm, [old])
    stub_endpoint(
        sm,
        old,
        {"InstanceType": "ml.c5.large", "InitialInstanceCount": 1},
        {"CurrentInstanceCount": 1},
    )
    busy = [{"Sum": 1234.0, "Unit": "None"}]
    invocations(cloudwatch, "dogbreed-busy", busy, start=ANY, end=ANY)  # the real clock's day
    assert main(["endpoints"]) == 0
    out = capsys.readouterr().out
    assert "IDLE" not in out
    hourly = HOURLY_USD["ml.c5.large"]
    assert f"total: ${hourly:.3f}/hour, ${hourly * 720:.2f}/month for 1 endpoint(s)" in out


def just_made(name: str) -> dict[str, Any]:
    """A ListEndpoints summary an hour old on the real clock (`dogbreed endpoints` reads it):
    too young to be checked for idleness."""
    created = datetime.now(UTC) - timedelta(hours=1)
    return {**summary(name, timedelta()), "CreationTime": created, "LastModifiedTime": created}


def not_found(sm: Stubber, operation: str, message: str, params: dict[str, str]) -> None:
    sm.add_client_error(
        operation,
        service_error_code="ValidationException",
        service_message=message,
        http_status_code=400,
        expected_params=params,
    )


def test_endpoints_being_deleted_or_without_a_config_are_listed_and_gone_ones_skipped(
    stub, capsys
) -> None:
    """Just after `dogbreed cleanup`: ListEndpoints still returns an endpoint in Deleting (its
    config already gone), one has gone between the list and its description, and one's config
    was deleted by hand. The table still comes (issue 20, item 4)."""
    sm = stub("sagemaker")
    vanished, orphan, prod = (just_made(name) for name in ("gone", "orphan", "dogbreed-prod"))
    leaving = {**just_made("leaving"), "EndpointStatus": "Deleting"}
    list_endpoints(sm, [vanished, leaving, orphan, prod])
    sm.add_response("list_tags", {"Tags": [TOOL_TAG]}, {"ResourceArn": ARN + "gone"})
    not_found(sm, "describe_endpoint", 'Could not find endpoint "gone".', {"EndpointName": "gone"})
    sm.add_response("list_tags", {"Tags": [TOOL_TAG]}, {"ResourceArn": ARN + "leaving"})
    sm.add_response(  # no DescribeEndpointConfig: its config is gone already
        "describe_endpoint",
        {
            **leaving,
            "EndpointConfigName": "leaving",
            "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}],
        },
        {"EndpointName": "leaving"},
    )
    sm.add_response("list_tags", {"Tags": [TOOL_TAG]}, {"ResourceArn": ARN + "orphan"})
    sm.add_response(
        "describe_endpoint",
        {
            **orphan,
            "EndpointConfigName": "orphan-config",
            "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}],
        },
        {"EndpointName": "orphan"},
    )
    not_found(
        sm,
        "describe_endpoint_config",
        'Could not find endpoint configuration "orphan-config".',
        {"EndpointConfigName": "orphan-config"},
    )
    stub_endpoint(
        sm,
        prod,
        {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1},
        {"CurrentInstanceCount": 1},
    )
    assert main(["endpoints"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:5] + line.split()[7:] for line in lines[1:4]}  # no age
    assert rows == {
        "leaving": ["Deleting", "real-time", "?", "1", "-", "(deleting)", "-"],
        "orphan": ["InService", "real-time", "?", "1", "unknown", "unknown"],
        "dogbreed-prod": ["InService", "real-time", "ml.m5.large", "1", "$0.115", "$82.80"],
    }
    assert lines[4:] == [
        "total: $0.115/hour, $82.80/month for 1 endpoint(s); 1 without an endpoint config; "
        "1 being deleted, not counted",
        "note: orphan: its endpoint config orphan-config is gone: instance type and price unknown",
    ]


def test_provisioned_concurrency_is_priced_per_hour_and_counted(stub, aws) -> None:
    """50 provisioned environments of 6 GB bill 50 x 6 GB-hours an hour, traffic or not; the
    live figures come from DescribeEndpoint (issue 20, item 5)."""
    sm = stub("sagemaker")
    warm = summary("dogbreed-warm", timedelta(hours=1))
    list_endpoints(sm, [warm])
    serverless = {"MemorySizeInMB": 6144, "MaxConcurrency": 50, "ProvisionedConcurrency": 50}
    stub_endpoint(
        sm,
        warm,
        {"ServerlessConfig": serverless},
        {"CurrentServerlessConfig": serverless, "DesiredServerlessConfig": serverless},
    )
    lines = endpoint_table(tool_endpoints(aws, NOW), aws.region, NOW)
    # 50 x 6 GB x USD 0.018 per GB-hour (prices.PROVISIONED_GB_HOUR_USD, us-east-1)
    assert lines[1].split()[1:] == [
        "InService",
        "serverless",
        "-",
        "0",
        "1h",
        "0m",
        "$5.400",
        "+",
        "requests",
        "$3888.00",
        "+",
        "requests",
    ]
    assert lines[2] == (
        "total: $5.400/hour, $3888.00/month for 1 endpoint(s); 1 serverless, billed per request "
        "(and per hour for provisioned concurrency, counted above)"
    )


def test_prices_are_known_only_for_their_region() -> None:
    from dogbreed.launch.endpoints.prices import provisioned_hourly_price

    assert hourly_price("ml.m5.large", "us-east-1") == 0.115
    assert hourly_price("ml.m5.large", "eu-west-1") is None
    assert hourly_price("ml.g4dn.xlarge", "us-east-1") is None
    assert provisioned_hourly_price(2048, 1, "us-east-1") == pytest.approx(0.036)
    assert provisioned_hourly_price(2048, 1, "eu-west-1") is None


@pytest.mark.parametrize(
    "mode",
    [{}, {"serverless": ServerlessSpec()}, {"asynchronous": AsyncSpec("s3://bucket/async/")}],
    ids=["real-time", "serverless", "async"],
)
def test_the_kind_read_back_is_the_mode_deploy_created(mode: dict[str, Any]) -> None:
    """What `deploy` sends as the endpoint config is what `endpoints` classifies."""
    spec = EndpointSpec("dogs", SERVE_IMAGE, "s3://bucket/model.tar.gz", ROLE, **mode)
    assert kind_of(endpoint_config_request(spec)) == spec.mode
