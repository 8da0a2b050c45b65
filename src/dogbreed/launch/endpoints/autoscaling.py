"""Application Auto Scaling for an endpoint's variant: target tracking, and scale-to-zero for async.

Real-time endpoints track invocations per instance (SageMaker's recommended metric). Async
endpoints track ``ApproximateBacklogSizePerInstance`` and may go down to 0 instances; with 0 the
backlog per instance is undefined, so AWS documents a second, step-scaling policy run by a
CloudWatch alarm on ``HasBacklogWithoutCapacity`` that adds one instance when requests wait and
none is running (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html,
"Optional: Define a scaling policy that scales up from zero for new requests"; the values below
are that page's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
#: The wake-from-zero alarm: 2 of 2 one-minute periods with a backlog and no instance.
WAKE_PERIOD_S = 60
WAKE_EVALUATION_PERIODS = 2
WAKE_COOLDOWN_S = 300
#: The end of the wake alarm's description: how cleanup knows the alarm is ours.
WAKE_ALARM_MARK = "(dogbreed)"


@dataclass(frozen=True)
class Autoscaling:
    """Instance bounds and the target a policy holds (the metric depends on the endpoint's mode)."""

    min_instances: int = 1
    max_instances: int = 2
    invocations_per_instance: float = 100.0  # per minute; real-time endpoints
    backlog_per_instance: float = 5.0  # queued requests; async endpoints
    scale_in_cooldown_s: int = 300
    scale_out_cooldown_s: int = 60


def resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT}"


def wake_alarm_name(endpoint: str) -> str:
    return f"{endpoint}-has-backlog-without-capacity"


def _scope(endpoint: str) -> dict[str, str]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": resource_id(endpoint),
        "ScalableDimension": SCALABLE_DIMENSION,
    }


def _check(scaling: Autoscaling, asynchronous: bool) -> None:
    lowest = 0 if asynchronous else 1
    if not lowest <= scaling.min_instances <= scaling.max_instances or scaling.max_instances < 1:
        zero = "" if asynchronous else " (only --async endpoints scale to 0)"
        raise LaunchError(
            f"need {lowest} <= min instances ({scaling.min_instances}) <= max "
            f"({scaling.max_instances}), max >= 1{zero}"
        )
    target = scaling.backlog_per_instance if asynchronous else scaling.invocations_per_instance
    if target <= 0:
        raise LaunchError(f"the scaling target must be > 0; got {target:g}")


def autoscaling_requests(
    endpoint: str, scaling: Autoscaling, asynchronous: bool = False
) -> tuple[dict, dict]:
    """``RegisterScalableTarget`` and the target-tracking ``PutScalingPolicy`` requests."""
    _check(scaling, asynchronous)
    target = {
        **_scope(endpoint),
        "MinCapacity": scaling.min_instances,
        "MaxCapacity": scaling.max_instances,
    }
    cooldowns = {
        "ScaleInCooldown": scaling.scale_in_cooldown_s,
        "ScaleOutCooldown": scaling.scale_out_cooldown_s,
    }
    if asynchronous:
        name, tracking = (
            f"{endpoint}-backlog",
            {
                "TargetValue": float(scaling.backlog_per_instance),
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
                    "Statistic": "Average",
                },
            },
        )
    else:
        name, tracking = (
            f"{endpoint}-invocations",
            {
                "TargetValue": float(scaling.invocations_per_instance),
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
            },
        )
    policy = {
        "PolicyName": name,
        **_scope(endpoint),
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {**tracking, **cooldowns},
    }
    return target, policy


def wake_policy_request(endpoint: str) -> dict[str, Any]:
    """The step-scaling policy that adds one instance to an endpoint at zero with a backlog."""
    return {
        "PolicyName": wake_alarm_name(endpoint),
        **_scope(endpoint),
        "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": WAKE_COOLDOWN_S,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    }


def wake_alarm_request(endpoint: str, policy_arn: str) -> dict[str, Any]:
    """The CloudWatch alarm on ``HasBacklogWithoutCapacity`` that runs the wake policy."""
    return {
        "AlarmName": wake_alarm_name(endpoint),
        "AlarmDescription": f"wake {endpoint} from 0 instances when async requests wait "
        + WAKE_ALARM_MARK,
        "MetricName": "HasBacklogWithoutCapacity",
        "Namespace": "AWS/SageMaker",
        "Statistic": "Average",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}],
        "Period": WAKE_PERIOD_S,
        "EvaluationPeriods": WAKE_EVALUATION_PERIODS,
        "DatapointsToAlarm": WAKE_EVALUATION_PERIODS,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "missing",
        "AlarmActions": [policy_arn],
    }


def apply_autoscaling(
    aws: Aws, endpoint: str, scaling: Autoscaling, asynchronous: bool = False
) -> list[str]:
    """Register the target and its policies (and the wake alarm at min 0); list what was made."""
    target, policy = autoscaling_requests(endpoint, scaling, asynchronous)
    client = aws.client("application-autoscaling")
    client.register_scalable_target(**target)
    client.put_scaling_policy(**policy)
    made = [
        f"scalable target {resource_id(endpoint)} ({scaling.min_instances}-"
        f"{scaling.max_instances} instances)",
        f"target-tracking policy {policy['PolicyName']}",
    ]
    if asynchronous and scaling.min_instances == 0:
        arn = client.put_scaling_policy(**wake_policy_request(endpoint))["PolicyARN"]
        aws.client("cloudwatch").put_metric_alarm(**wake_alarm_request(endpoint, arn))
        made += [f"step policy and CloudWatch alarm {wake_alarm_name(endpoint)} (wakes it from 0)"]
    return made


def find_autoscaling(aws: Aws, endpoint: str) -> tuple[bool, bool]:
    """Whether the endpoint's variant has a scalable target, and whether our wake alarm exists
    (an alarm of that name whose description does not end in :data:`WAKE_ALARM_MARK` is not)."""
    targets = aws.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker",
        ResourceIds=[resource_id(endpoint)],
        ScalableDimension=SCALABLE_DIMENSION,
    )
    alarms = aws.client("cloudwatch").describe_alarms(AlarmNames=[wake_alarm_name(endpoint)])
    ours = [
        alarm
        for alarm in alarms.get("MetricAlarms", [])
        if alarm.get("AlarmDescription", "").endswith(WAKE_ALARM_MARK)
    ]
    return bool(targets.get("ScalableTargets")), bool(ours)


def remove_autoscaling(
    aws: Aws, endpoint: str, target: bool, alarm: bool, missing: Callable[[ClientError], bool]
) -> list[str]:
    """Deregister the target (its policies go with it) and delete the wake alarm, as asked.

    ``missing(error)`` says whether a ClientError means the resource is already gone.
    """
    removed = []
    if target:
        try:
            aws.client("application-autoscaling").deregister_scalable_target(**_scope(endpoint))
            removed.append(f"autoscaling target {resource_id(endpoint)}")
        except ClientError as error:
            if not missing(error):
                raise
    if alarm:
        aws.client("cloudwatch").delete_alarms(AlarmNames=[wake_alarm_name(endpoint)])
        removed.append(f"CloudWatch alarm {wake_alarm_name(endpoint)}")
    return removed
