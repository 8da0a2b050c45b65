"""The SageMaker service quotas a run needs, and whether the account's allow them.

Service quotas are looked up by name, not code: codes differ per instance type and region, and
AWS names them ``<instance type> for training job usage`` / ``for processing job usage`` /
``for endpoint usage`` (the SageMaker quota list of the AWS General Reference,
https://docs.aws.amazon.com/general/latest/gr/sagemaker.html#limits_sagemaker). The code that a
fix command needs comes from the same ``ListServiceQuotas`` answer. Managed spot training counts
against its own quota, ``<instance type> for spot training job usage``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.session import Aws
from dogbreed.launch.training.checks import OK, PROBLEM, SKIPPED, Check, denied
from dogbreed.launch.training.debugger import DebuggerSettings, debugger_request, rule_image_uri
from dogbreed.launch.training.permissions import DENIED, code_of

#: Where SageMaker runs a rule evaluation whose configuration names no InstanceType (ours name
#: none): one processing job per rule, for as long as the training job runs. The instance type is
#: the one users report (issue 10); SageMaker's API reference does not state this default.
RULE_INSTANCE_TYPE = "ml.m5.xlarge"


@dataclass(frozen=True)
class QuotaNeed:
    """How many instances of a type one step runs at once, under one Service Quotas name."""

    check: str
    instance_type: str
    usage: str  # "training job", "spot training job", "processing job" or "endpoint"
    count: int
    alternative: str = ""  # another fix besides an increase

    @property
    def quota_name(self) -> str:
        return f"{self.instance_type} for {self.usage} usage"


def _quotas(pages: Iterable[dict[str, Any]], wanted: set[str]) -> dict[str, dict[str, Any]]:
    return {q["QuotaName"]: q for page in pages for q in page["Quotas"] if q["QuotaName"] in wanted}


def find_quotas(aws: Aws, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """SageMaker quotas by exact name: the applied value, else AWS's default.

    ListServiceQuotas omits quotas whose applied value is not available; for those,
    ListAWSDefaultServiceQuotas gives the default. Names found in neither are left out.
    """
    client = aws.client("service-quotas")
    wanted = set(names)
    found = _quotas(
        client.get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"), wanted
    )
    if wanted - set(found):
        defaults = client.get_paginator("list_aws_default_service_quotas")
        found = _quotas(defaults.paginate(ServiceCode="sagemaker"), wanted - set(found)) | found
    return found


def check_quotas(aws: Aws, needs: Sequence[QuotaNeed]) -> list[Check]:
    if not needs:
        return []
    try:
        quotas = find_quotas(aws, {need.quota_name for need in needs})
    except ClientError as error:
        if code_of(error) in DENIED:
            return [denied(need.check, error) for need in needs]
        raise
    checks = []
    for need in needs:
        quota = quotas.get(need.quota_name)
        if quota is None or "Value" not in quota:
            checks.append(
                Check(need.check, SKIPPED, f"no SageMaker quota named {need.quota_name!r} here")
            )
            continue
        value = int(quota["Value"])
        said = f"{need.quota_name!r} is {value}, needs {need.count}"
        if value >= need.count:
            checks.append(Check(need.check, OK, said))
            continue
        increase = (
            "aws service-quotas request-service-quota-increase --service-code sagemaker "
            f"--quota-code {quota['QuotaCode']} --desired-value {need.count} --region {aws.region} "
            "(or Service Quotas console > AWS services > Amazon SageMaker > the quota > Request "
            "increase)"
        )
        fix = increase + (f"; or {need.alternative}" if need.alternative else "")
        checks.append(Check(need.check, PROBLEM, said, fix))
    return checks


def rule_evaluations(debug_request: dict[str, Any]) -> Counter[str]:
    """Processing instances a training request's rules run on, by type (one per rule)."""
    rules = [
        *debug_request.get("DebugRuleConfigurations", []),
        *debug_request.get("ProfilerRuleConfigurations", []),
    ]
    return Counter(rule.get("InstanceType", RULE_INSTANCE_TYPE) for rule in rules)


def training_need(
    instance_type: str, count: int, spot: bool = False, parallel: int | None = None
) -> QuotaNeed:
    """``train``'s instances, or (with ``parallel``) tune's: every parallel trial's instances count
    (AWS's automatic model tuning limits page: each concurrent training instance counts against
    the training instance quota). Managed spot training counts against the spot quota of the
    type."""
    usage = "spot training job" if spot else "training job"
    if parallel is None:
        return QuotaNeed("training", instance_type, usage, count)
    return QuotaNeed(
        f"tuning ({parallel} parallel trials)",
        instance_type,
        usage,
        parallel * count,
        "tune with fewer parallel trials (--max-parallel)",
    )


def rule_needs(region: str, rules: Sequence[str], tensors: bool, profiler: bool) -> list[QuotaNeed]:
    """The processing instances ``train``'s rules would take (none where there is no rule image)."""
    if not (tensors or profiler) or rule_image_uri(region) is None:
        return []
    settings = DebuggerSettings("s3://preflight/", tensors=tensors, rules=rules, profiler=profiler)
    return [
        QuotaNeed(
            f"rule evaluations ({count} processing jobs)",
            instance_type,
            "processing job",
            count,
            "train with fewer rules (--rules A,B) or without them (--no-debugger --no-profiler)",
        )
        for instance_type, count in rule_evaluations(debugger_request(settings, region)).items()
    ]
