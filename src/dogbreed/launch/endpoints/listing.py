"""The live endpoints this tool made, and what they cost: ``dogbreed endpoints``.

An endpoint counts as ours when it carries :data:`dogbreed.launch.defaults.TOOL_TAG`. Its kind
comes from DescribeEndpoint, which carries each variant's serverless configuration and the async
one: serverless (billed per request and memory, and per hour for provisioned concurrency, which
bills with or without traffic), asynchronous (billed per instance-hour, nothing while scaled to
0), else real-time (billed per instance-hour from creation to deletion). Instance types come from
the endpoint config; an endpoint whose config is gone (``dogbreed cleanup`` deletes it at once,
while DeleteEndpoint takes a while, or it was deleted by hand) is still listed, its price unknown,
and one in ``Deleting`` is listed as such and left out of the total. An endpoint that disappears
between the listing and its description is skipped. Instance counts are the endpoint's current
ones; prices come from :mod:`dogbreed.launch.endpoints.prices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.endpoints.deploy import describe_or_none, made_by_tool, missing
from dogbreed.launch.endpoints.prices import PRICE_REGION, hourly_price, provisioned_hourly_price
from dogbreed.launch.session import Aws

HOURS_PER_MONTH = 24 * 30
#: A real-time endpoint older than this with no invocations in the last day is flagged idle.
IDLE_AFTER = timedelta(days=1)
REAL_TIME, SERVERLESS, ASYNC = "real-time", "serverless", "async"
DELETING = "Deleting"


@dataclass(frozen=True)
class LiveEndpoint:
    name: str
    status: str
    kind: str
    instance_type: str
    instances: int
    created: datetime
    #: What it bills per hour with or without traffic: its instances, or a serverless endpoint's
    #: provisioned concurrency. None: an unknown price, or a serverless one with none provisioned.
    hourly_usd: float | None
    memory_mb: int | None = None  # serverless only
    provisioned: int = 0  # serverless only: provisioned concurrency
    idle: bool = False  # no invocations in the last IDLE_AFTER
    note: str = ""  # why a price is unknown, when it is not the price table's gap

    @property
    def deleting(self) -> bool:
        return self.status == DELETING

    @property
    def per_request_only(self) -> bool:
        """Serverless without provisioned concurrency: nothing billed while idle."""
        return self.kind == SERVERLESS and not self.provisioned

    @property
    def counted(self) -> bool:
        """In the total: priced, and not on its way out."""
        return not self.deleting and self.hourly_usd is not None

    def cost_cells(self) -> tuple[str, str]:
        """Per hour and per 30-day month, as the table shows them."""
        if self.deleting:
            return "- (deleting)", "-"
        if self.per_request_only:
            return f"per request ({self.memory_mb} MB)", "per request"
        if self.hourly_usd is None:
            return "unknown", "unknown"
        hourly, monthly = f"${self.hourly_usd:.3f}", f"${self.hourly_usd * HOURS_PER_MONTH:.2f}"
        if self.kind == SERVERLESS:
            return f"{hourly} + requests", f"{monthly} + requests"
        return hourly, monthly


def is_serverless(variant: Mapping[str, Any]) -> bool:
    """A variant of an endpoint config (``ServerlessConfig``) or of an endpoint
    (``CurrentServerlessConfig`` / ``DesiredServerlessConfig``) that is serverless."""
    keys = ("ServerlessConfig", "CurrentServerlessConfig", "DesiredServerlessConfig")
    return any(key in variant for key in keys)


def kind_of(described: Mapping[str, Any]) -> str:
    """The kind of an endpoint config, or of an endpoint as DescribeEndpoint gives it."""
    if any(is_serverless(variant) for variant in described.get("ProductionVariants", [])):
        return SERVERLESS
    return ASYNC if described.get("AsyncInferenceConfig") else REAL_TIME


def live_variants_serverless(variants: Sequence[Mapping[str, Any]]) -> bool:
    return any(is_serverless(variant) for variant in variants)


def serverless_config(variant: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A variant's serverless configuration, the live one first."""
    for key in ("CurrentServerlessConfig", "DesiredServerlessConfig", "ServerlessConfig"):
        if key in variant:
            return variant[key]
    return None


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


def _serverless_hourly(
    variants: Sequence[Mapping[str, Any]], region: str
) -> tuple[float | None, int | None, int]:
    """Provisioned concurrency's price per hour, the memory size and the concurrency provisioned,
    over a serverless endpoint's variants (price None when none is provisioned or it is unknown)."""
    hourly: float | None = 0.0
    memory, provisioned = None, 0
    for variant in variants:
        config = serverless_config(variant) or {}
        memory = memory or config.get("MemorySizeInMB")
        count = config.get("ProvisionedConcurrency", 0)
        if count:
            provisioned += count
            price = provisioned_hourly_price(config["MemorySizeInMB"], count, region)
            hourly = None if price is None or hourly is None else hourly + price
    return (hourly if provisioned else None), memory, provisioned


def describe_live(aws: Aws, summary: Mapping[str, Any], now: datetime) -> LiveEndpoint | None:
    """One endpoint of :func:`tool_endpoints`: its kind, instances, price and idleness; None if it
    is gone by now."""
    sm = aws.sagemaker
    name = summary["EndpointName"]
    endpoint = describe_or_none(sm.describe_endpoint, EndpointName=name)
    if endpoint is None:
        return None
    status = endpoint["EndpointStatus"]
    live_variants = endpoint.get("ProductionVariants", [])
    config, note = None, ""
    if status != DELETING:
        config_name = endpoint["EndpointConfigName"]
        config = describe_or_none(sm.describe_endpoint_config, EndpointConfigName=config_name)
        if config is None and not live_variants_serverless(live_variants):
            note = (
                f"{name}: its endpoint config {config_name} is gone: "
                "instance type and price unknown"
            )
    config_variants = config["ProductionVariants"] if config else []
    kind = kind_of(
        {
            "ProductionVariants": [*live_variants, *config_variants],
            "AsyncInferenceConfig": endpoint.get("AsyncInferenceConfig")
            or (config or {}).get("AsyncInferenceConfig"),
        }
    )
    counts = {v["VariantName"]: current_instances(v) for v in live_variants}
    types = sorted({v["InstanceType"] for v in config_variants if "InstanceType" in v})
    unknown_type = config is None and kind != SERVERLESS  # the config is gone
    instances = sum(counts.values())
    hourly: float | None = None
    memory, provisioned = None, 0
    if kind == SERVERLESS:
        hourly, memory, provisioned = _serverless_hourly(
            live_variants or config_variants, aws.region
        )
    elif config is not None:
        prices = [
            (hourly_price(v["InstanceType"], aws.region), counts.get(v["VariantName"], 0))
            for v in config_variants
        ]
        if all(price is not None or count == 0 for price, count in prices):
            hourly = sum((price or 0.0) * count for price, count in prices)
    idle = (
        kind == REAL_TIME
        and status != DELETING
        and instances > 0
        and now - summary["CreationTime"] > IDLE_AFTER
        and invocations_last_day(aws, name, list(counts), now) == 0
    )
    return LiveEndpoint(
        name=name,
        status=status,
        kind=kind,
        instance_type=", ".join(types) or ("?" if unknown_type else "-"),
        instances=instances,
        created=summary["CreationTime"],
        hourly_usd=hourly,
        memory_mb=memory,
        provisioned=provisioned,
        idle=idle,
        note=note,
    )


def _ours(sm: Any, summary: Mapping[str, Any]) -> bool:
    """Whether the endpoint carries our tag; False if it went away since the listing."""
    try:
        return made_by_tool(sm, summary["EndpointArn"])
    except ClientError as error:
        if missing(error):
            return False
        raise


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
    described = (describe_live(aws, summary, now) for summary in summaries if _ours(sm, summary))
    return [endpoint for endpoint in described if endpoint is not None]


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
    priced = [e for e in endpoints if e.counted]
    hourly = sum(e.hourly_usd or 0.0 for e in priced)
    total = f"total: ${hourly:.3f}/hour, ${hourly * HOURS_PER_MONTH:.2f}/month for {len(priced)} endpoint(s)"
    unknown = [e for e in endpoints if not e.deleting and not e.per_request_only and not e.counted]
    if any(not e.note for e in unknown):
        gaps = sum(1 for e in unknown if not e.note)
        total += f"; {gaps} at an unknown price (prices known: some {PRICE_REGION} types)"
    if any(e.note for e in unknown):
        total += f"; {sum(1 for e in unknown if e.note)} without an endpoint config"
    serverless = [e for e in endpoints if e.kind == SERVERLESS and not e.deleting]
    if serverless:
        total += f"; {len(serverless)} serverless, billed per request"
        if any(e.provisioned and e.counted for e in serverless):
            total += " (and per hour for provisioned concurrency, counted above)"
    deleting = sum(1 for e in endpoints if e.deleting)
    if deleting:
        total += f"; {deleting} being deleted, not counted"
    lines.append(total)
    lines += [f"note: {e.note}" for e in endpoints if e.note]
    if any(e.idle for e in endpoints):
        lines.append("remove an idle endpoint with: dogbreed cleanup NAME")
    return lines
