"""The live endpoints this tool made, and what they cost: ``dogbreed endpoints``.

An endpoint counts as ours when it carries :data:`dogbreed.launch.defaults.TOOL_TAG`. Its kind
comes from its endpoint config: ``ServerlessConfig`` on a variant (serverless: billed per request
and memory, nothing per hour), ``AsyncInferenceConfig`` (asynchronous: billed per instance-hour,
nothing while scaled to 0), else real-time (billed per instance-hour from creation to deletion).
Instance counts are the endpoint's current ones; prices come from :mod:`dogbreed.launch.endpoints.prices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dogbreed.launch.defaults import TOOL_TAG
from dogbreed.launch.endpoints.prices import PRICE_REGION, hourly_price
from dogbreed.launch.session import Aws

HOURS_PER_MONTH = 24 * 30
#: A real-time endpoint older than this with no invocations in the last day is flagged idle.
IDLE_AFTER = timedelta(days=1)
REAL_TIME, SERVERLESS, ASYNC = "real-time", "serverless", "async"


@dataclass(frozen=True)
class LiveEndpoint:
    name: str
    status: str
    kind: str
    instance_type: str
    instances: int
    created: datetime
    hourly_usd: float | None  # None: per request (serverless) or an unknown price
    memory_mb: int | None = None  # serverless only
    idle: bool = False  # no invocations in the last IDLE_AFTER

    def cost_cells(self) -> tuple[str, str]:
        """Per hour and per 30-day month, as the table shows them."""
        if self.kind == SERVERLESS:
            return f"per request ({self.memory_mb} MB)", "per request"
        if self.hourly_usd is None:
            return "unknown", "unknown"
        return f"${self.hourly_usd:.3f}", f"${self.hourly_usd * HOURS_PER_MONTH:.2f}"


def made_by_tool(sagemaker: Any, arn: str) -> bool:
    """Whether the resource carries :data:`TOOL_TAG`."""
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        for tag in page.get("Tags", []):
            if tag["Key"] == TOOL_TAG["Key"] and tag.get("Value") == TOOL_TAG["Value"]:
                return True
    return False


def kind_of(config: Mapping[str, Any]) -> str:
    if any("ServerlessConfig" in variant for variant in config["ProductionVariants"]):
        return SERVERLESS
    return ASYNC if config.get("AsyncInferenceConfig") else REAL_TIME


def current_instances(variant: Mapping[str, Any]) -> int:
    """A variant's running instances: current, else desired (while it is being created)."""
    return variant.get("CurrentInstanceCount", variant.get("DesiredInstanceCount", 0))


def invocations_last_day(aws: Aws, endpoint: str, variants: Sequence[str], now: datetime) -> float:
    """Sum of the ``Invocations`` metric over the last day, all variants."""
    cloudwatch = aws.client("cloudwatch")
    total = 0.0
    for variant in variants:
        answer = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="Invocations",
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": variant},
            ],
            StartTime=now - IDLE_AFTER,
            EndTime=now,
            Period=int(IDLE_AFTER.total_seconds()),
            Statistics=["Sum"],
        )
        total += sum(point["Sum"] for point in answer["Datapoints"])
    return total


def describe_live(aws: Aws, summary: Mapping[str, Any], now: datetime) -> LiveEndpoint:
    """One endpoint of :func:`list_endpoints`: its config, instances, price and idleness."""
    sm = aws.sagemaker
    name = summary["EndpointName"]
    endpoint = sm.describe_endpoint(EndpointName=name)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    kind = kind_of(config)
    counts = {
        v["VariantName"]: current_instances(v) for v in endpoint.get("ProductionVariants", [])
    }
    variants = config["ProductionVariants"]
    types = sorted({v["InstanceType"] for v in variants if "InstanceType" in v})
    instances = sum(counts.values())
    memory = next(
        (v["ServerlessConfig"]["MemorySizeInMB"] for v in variants if "ServerlessConfig" in v), None
    )
    hourly: float | None = None
    if kind != SERVERLESS:
        prices = [
            (hourly_price(v["InstanceType"], aws.region), counts.get(v["VariantName"], 0))
            for v in variants
        ]
        if all(price is not None or count == 0 for price, count in prices):
            hourly = sum((price or 0.0) * count for price, count in prices)
    idle = (
        kind == REAL_TIME
        and instances > 0
        and now - summary["CreationTime"] > IDLE_AFTER
        and invocations_last_day(aws, name, list(counts), now) == 0
    )
    return LiveEndpoint(
        name=name,
        status=endpoint["EndpointStatus"],
        kind=kind,
        instance_type=", ".join(types) or "-",
        instances=instances,
        created=summary["CreationTime"],
        hourly_usd=hourly,
        memory_mb=memory,
        idle=idle,
    )


def tool_endpoints(aws: Aws, now: datetime | None = None) -> list[LiveEndpoint]:
    """Every endpoint in the region that carries :data:`TOOL_TAG`, oldest first."""
    now = now or datetime.now(UTC)
    sm = aws.sagemaker
    summaries = [
        summary
        for page in sm.get_paginator("list_endpoints").paginate(
            SortBy="CreationTime", SortOrder="Ascending"
        )
        for summary in page["Endpoints"]
    ]
    return [
        describe_live(aws, summary, now)
        for summary in summaries
        if made_by_tool(sm, summary["EndpointArn"])
    ]


def age(created: datetime, now: datetime) -> str:
    """``3d 4h``, ``5h 12m`` or ``7m``."""
    minutes = max(0, int((now - created).total_seconds() // 60))
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def endpoint_table(endpoints: Sequence[LiveEndpoint], region: str, now: datetime) -> list[str]:
    """A table with a total line; endpoints idle for a day are flagged."""
    if not endpoints:
        return [f"no live endpoints made by dogbreed in {region}"]
    header = ("NAME", "STATUS", "KIND", "INSTANCE", "COUNT", "AGE", "PER HOUR", "PER MONTH", "")
    rows = [
        (
            e.name,
            e.status,
            e.kind,
            e.instance_type,
            str(e.instances),
            age(e.created, now),
            *e.cost_cells(),
            "IDLE: no invocations in 24 h" if e.idle else "",
        )
        for e in endpoints
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    priced = [e.hourly_usd for e in endpoints if e.kind != SERVERLESS and e.hourly_usd is not None]
    hourly = sum(priced)
    total = f"total: ${hourly:.3f}/hour, ${hourly * HOURS_PER_MONTH:.2f}/month for {len(priced)} endpoint(s)"
    unknown = sum(1 for e in endpoints if e.kind != SERVERLESS and e.hourly_usd is None)
    serverless = sum(1 for e in endpoints if e.kind == SERVERLESS)
    if unknown:
        total += f"; {unknown} at an unknown price (prices known: some {PRICE_REGION} types)"
    if serverless:
        total += f"; {serverless} serverless, billed per request"
    lines.append(total)
    if any(e.idle for e in endpoints):
        lines.append("remove an idle endpoint with: dogbreed cleanup NAME")
    return lines
