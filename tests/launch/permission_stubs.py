"""Stubbed answers of IAM's policy simulator and of the lookups around it, for the preflight tests.

The simulator answers one ``EvaluationResult`` per action; where the request named resources, the
decision for each is in ``ResourceSpecificResults`` and the top-level decision is the most
restrictive of them (AWS's EvaluationResult reference). ``allowed`` gives the short form some
answers take: one decision per action, no resource named.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from botocore.stub import Stubber

#: The most restrictive decision first.
SEVERITY = ("explicitDeny", "implicitDeny", "allowed")
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def asked(
    role: str,
    actions: Sequence[str],
    resources: Sequence[str],
    context: Mapping[str, str] | None = None,
    marker: str | None = None,
) -> dict:
    """The exact SimulatePrincipalPolicy request for ``actions`` on ``resources``."""
    request: dict = {
        "PolicySourceArn": role,
        "ActionNames": list(actions),
        "ResourceArns": list(resources),
    }
    if context:
        request["ContextEntries"] = [
            {"ContextKeyName": key, "ContextKeyValues": [value], "ContextKeyType": "string"}
            for key, value in context.items()
        ]
    if marker:
        request["Marker"] = marker
    return request


def allowed(*actions: str) -> list[dict]:
    """Every action allowed on every resource asked (one result per action, no resource named)."""
    return [{"EvalActionName": action, "EvalDecision": "allowed"} for action in actions]


def decided(action: str, decisions: Mapping[str, str], missing: Iterable[str] = ()) -> dict:
    """One action's result: ``decisions`` by resource ARN, each with ``missing`` context keys."""
    per_resource = [
        {"EvalResourceName": resource, "EvalResourceDecision": decision}
        | ({"MissingContextValues": list(missing)} if missing else {})
        for resource, decision in decisions.items()
    ]
    return {
        "EvalActionName": action,
        "EvalDecision": min(decisions.values(), key=SEVERITY.index),
        "ResourceSpecificResults": per_resource,
    }


def answer(results: list[dict], marker: str | None = None) -> dict:
    page: dict = {"EvaluationResults": results, "IsTruncated": bool(marker)}
    if marker:
        page["Marker"] = marker
    return page


def stub_simulation(
    iam: Stubber,
    role: str,
    actions: Sequence[str],
    resources: Sequence[str],
    results: list[dict],
    context: Mapping[str, str] | None = None,
) -> None:
    """One exact SimulatePrincipalPolicy request and its answer (one page)."""
    iam.add_response(
        "simulate_principal_policy", answer(results), asked(role, actions, resources, context)
    )


def repository_arn(image: str) -> str:
    """``<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`` -> the repository's ARN."""
    registry, _, path = image.partition("/")
    account, _, _, region = registry.split(".")[:4]
    return f"arn:aws:ecr:{region}:{account}:repository/{path.split(':')[0].split('@')[0]}"


def stub_role_may_run(stub: Callable[[str], Stubber], role: str, image: str, bucket: str) -> None:
    """A role allowed everything a `train` or `tune` run asks of the simulator, whatever its
    prefixes: ``bucket`` has SSE-S3 default encryption (no KMS key), and each question (read,
    list, write, pull, log in) is answered "allowed" for all its resources."""
    stub("s3").add_response(
        "get_bucket_encryption",
        {
            "ServerSideEncryptionConfiguration": {
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            }
        },
        {"Bucket": bucket},
    )
    iam = stub("iam")
    iam.add_response("simulate_principal_policy", answer(allowed("s3:GetObject")))
    stub_simulation(
        iam, role, ["s3:ListBucket"], [f"arn:aws:s3:::{bucket}"], allowed("s3:ListBucket")
    )
    iam.add_response("simulate_principal_policy", answer(allowed("s3:PutObject")))
    stub_simulation(iam, role, PULL, [repository_arn(image)], allowed(*PULL))
    stub_simulation(
        iam, role, ["ecr:GetAuthorizationToken"], ["*"], allowed("ecr:GetAuthorizationToken")
    )


def quota(name: str, value: float, code: str = "L-EXAMPLE00") -> dict:
    return {
        "ServiceCode": "sagemaker",
        "ServiceName": "Amazon SageMaker",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
    }


def stub_training_quotas(
    stub: Callable[[str], Stubber],
    instance_types: Iterable[str] = ("ml.g4dn.xlarge", "ml.g5.xlarge"),
    value: float = 8,
) -> None:
    """One ListServiceQuotas page: the on-demand and spot training quotas of ``instance_types``."""
    quotas = [
        quota(f"{instance_type} for {usage} usage", value)
        for instance_type in instance_types
        for usage in ("training job", "spot training job")
    ]
    stub("service-quotas").add_response(
        "list_service_quotas", {"Quotas": quotas}, {"ServiceCode": "sagemaker"}
    )
