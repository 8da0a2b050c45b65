"""Real-time endpoints: model -> endpoint config -> endpoint, autoscaling, and cleanup.

One name is used for all three resources, so ``dogbreed cleanup NAME`` can find and remove
every one of them (and the autoscaling target) without a state file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch import LaunchError, defaults
from dogbreed.launch.session import Aws, check_name, check_s3_uri

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


@dataclass(frozen=True)
class Autoscaling:
    """Target tracking on invocations per instance (SageMaker's recommended policy)."""

    min_instances: int = 1
    max_instances: int = 2
    invocations_per_instance: float = 100.0  # per minute
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    image_uri: str
    model_data: str
    role_arn: str
    instance_type: str = defaults.SERVING_INSTANCE_TYPE
    instance_count: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)
    autoscaling: Autoscaling | None = None


def model_request(spec: EndpointSpec, local: bool = False) -> dict[str, Any]:
    check_name(spec.name)
    data = check_s3_uri(spec.model_data, "the model data", allow_file=local)
    if not data.endswith(".tar.gz"):
        raise LaunchError(f"the model data must be a model.tar.gz; got {data!r}")
    return {
        "ModelName": spec.name,
        "PrimaryContainer": {
            "Image": spec.image_uri,
            "ModelDataUrl": data,
            "Environment": dict(spec.environment),
        },
        "ExecutionRoleArn": spec.role_arn,
    }


def endpoint_config_request(spec: EndpointSpec) -> dict[str, Any]:
    if spec.instance_count < 1:
        raise LaunchError(f"instance count must be >= 1; got {spec.instance_count}")
    return {
        "EndpointConfigName": spec.name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": spec.name,
                "InstanceType": spec.instance_type,
                "InitialInstanceCount": spec.instance_count,
            }
        ],
    }


def resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def autoscaling_requests(endpoint: str, scaling: Autoscaling) -> tuple[dict, dict]:
    """``RegisterScalableTarget`` and ``PutScalingPolicy`` requests (application-autoscaling)."""
    if not 1 <= scaling.min_instances <= scaling.max_instances:
        raise LaunchError(
            f"need 1 <= min instances ({scaling.min_instances}) <= max ({scaling.max_instances})"
        )
    if scaling.invocations_per_instance <= 0:
        raise LaunchError("the target invocations per instance must be > 0")
    target = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id(endpoint),
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": scaling.min_instances,
        "MaxCapacity": scaling.max_instances,
    }
    policy = {
        "PolicyName": f"{endpoint}-invocations",
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id(endpoint),
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(scaling.invocations_per_instance),
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": scaling.scale_in_cooldown_s,
            "ScaleOutCooldown": scaling.scale_out_cooldown_s,
        },
    }
    return target, policy


def deploy(aws: Aws, spec: EndpointSpec, wait: bool = True) -> dict[str, Any]:
    """Create model, endpoint config and endpoint; with ``wait``, return once it is InService.

    Autoscaling needs an InService endpoint, so it implies waiting. In local mode the endpoint
    is a docker container on this machine, InService when the call returns.
    """
    sm = aws.sagemaker
    sm.create_model(**model_request(spec, local=aws.local))
    sm.create_endpoint_config(**endpoint_config_request(spec))
    sm.create_endpoint(EndpointName=spec.name, EndpointConfigName=spec.name)
    if aws.local:
        return sm.describe_endpoint(EndpointName=spec.name)
    if wait or spec.autoscaling:
        wait_in_service(aws, spec.name)
    if spec.autoscaling:
        target, policy = autoscaling_requests(spec.name, spec.autoscaling)
        scaling = aws.client("application-autoscaling")
        scaling.register_scalable_target(**target)
        scaling.put_scaling_policy(**policy)
    return sm.describe_endpoint(EndpointName=spec.name)


def wait_in_service(aws: Aws, endpoint: str) -> None:
    from botocore.exceptions import WaiterError

    try:
        aws.sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 30, "MaxAttempts": 60}
        )
    except WaiterError:
        described = aws.sagemaker.describe_endpoint(EndpointName=endpoint)
        reason = described.get("FailureReason", described.get("EndpointStatus"))
        raise LaunchError(f"endpoint {endpoint} did not come into service: {reason}") from None


def _missing(error: ClientError) -> bool:
    message = error.response.get("Error", {}).get("Message", "")
    return error.response.get("Error", {}).get("Code") in (
        "ValidationException",
        "ResourceNotFound",
        "ObjectNotFoundException",
    ) and ("Could not find" in message or "does not exist" in message or "No " in message)


def cleanup(aws: Aws, endpoint: str) -> list[str]:
    """Delete the endpoint, its config and its models (and autoscaling target); list what went.

    Resources that are already gone are skipped; the endpoint name is also tried as a config and
    model name, so a half-finished deploy is cleaned up too.
    """
    sm = aws.sagemaker
    removed: list[str] = []
    config_name, model_names = endpoint, {endpoint}
    try:
        config_name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except ClientError as error:
        if not _missing(error):
            raise
    try:
        variants = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
        model_names |= {v["ModelName"] for v in variants}
    except ClientError as error:
        if not _missing(error):
            raise
    if not aws.local:
        scaling = aws.client("application-autoscaling")
        try:
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource_id(endpoint),
                ScalableDimension=SCALABLE_DIMENSION,
            )
            removed.append(f"autoscaling target {resource_id(endpoint)}")
        except ClientError as error:
            if not _missing(error):
                raise
    steps = [("endpoint", sm.delete_endpoint, {"EndpointName": endpoint})]
    steps.append(
        ("endpoint config", sm.delete_endpoint_config, {"EndpointConfigName": config_name})
    )
    steps += [("model", sm.delete_model, {"ModelName": m}) for m in sorted(model_names)]
    for kind, delete, args in steps:
        try:
            delete(**args)
            removed.append(f"{kind} {next(iter(args.values()))}")
        except ClientError as error:
            if not _missing(error):
                raise
    return removed
