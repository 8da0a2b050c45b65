"""Endpoints: model -> endpoint config -> endpoint (real-time, serverless or async), and cleanup.

One name is used for all three resources, so ``dogbreed cleanup NAME`` can find every one of
them (and the autoscaling target and alarm) without a state file. All three carry
:data:`dogbreed.launch.defaults.TOOL_TAG` (as does the model ``dogbreed transform`` creates), so
the launcher's endpoints can be listed by tag, and cleanup deletes only what carries it: never an
endpoint, config or model someone else made, and never a config another endpoint serves or a
model another endpoint config or a running transform job uses. :func:`plan_cleanup` says what
would go and what stays, and why; :func:`apply_cleanup` deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.contract import REALTIME_MAX_PAYLOAD_MB
from dogbreed.launch import defaults
from dogbreed.launch.endpoints.async_endpoint import AsyncSpec
from dogbreed.launch.endpoints.autoscaling import (
    VARIANT,
    Autoscaling,
    apply_autoscaling,
    autoscaling_requests,
    find_autoscaling,
    remove_autoscaling,
    resource_id,
    wake_alarm_name,
)
from dogbreed.launch.endpoints.serverless import ServerlessSpec
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws, check_name, check_s3_uri

#: The server's settings (serve/config.py) that follow the endpoint's mode.
PAYLOAD_ENV = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
TIMEOUT_ENV = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
ONE_MODE = "--serverless and --async are different kinds of endpoint: pick one"


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint: real-time on instances (the default), ``serverless``, or ``asynchronous``."""

    name: str
    image_uri: str
    model_data: str
    role_arn: str
    instance_type: str = defaults.SERVING_INSTANCE_TYPE
    instance_count: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)
    autoscaling: Autoscaling | None = None
    serverless: ServerlessSpec | None = None
    asynchronous: AsyncSpec | None = None

    def __post_init__(self) -> None:
        if self.serverless and self.asynchronous:
            raise LaunchError(ONE_MODE)
        if self.serverless and self.autoscaling:
            raise LaunchError(
                "serverless endpoints scale by themselves up to --max-concurrency: "
                "drop --autoscale-max"
            )

    @property
    def mode(self) -> str:
        return "serverless" if self.serverless else "async" if self.asynchronous else "real-time"

    @property
    def max_payload_mb(self) -> int:
        mode = self.serverless or self.asynchronous
        return mode.max_payload_mb if mode else REALTIME_MAX_PAYLOAD_MB


#: The options of each mode, as the command line names them (``vars(args)``).
SERVERLESS_OPTIONS = ("memory_mb", "max_concurrency", "provisioned_concurrency")
ASYNC_OPTIONS = (
    "output_s3",
    "failure_s3",
    "success_topic",
    "error_topic",
    "max_concurrent_invocations_per_instance",
)


def endpoint_mode(options: Mapping[str, Any]) -> tuple[ServerlessSpec | None, AsyncSpec | None]:
    """The serverless or async part of ``dogbreed deploy``'s options, checked; (None, None) for a
    real-time endpoint. A mode's option without its mode, or an instance type with serverless,
    is refused."""
    for flag, mode, names in (
        ("--serverless", "serverless", SERVERLESS_OPTIONS),
        ("--async", "asynchronous", ASYNC_OPTIONS),
    ):
        given = [name for name in names if options.get(name) is not None]
        if given and not options.get(mode):
            dashed = ", ".join("--" + name.replace("_", "-") for name in given)
            raise LaunchError(f"{dashed} apply to {flag} endpoints only: add {flag} or drop them")
    if options.get("serverless") and options.get("asynchronous"):
        raise LaunchError(ONE_MODE)
    serverless = asynchronous = None
    if options.get("serverless"):
        if options.get("instance_type"):
            raise LaunchError("serverless endpoints have no instance type: drop --instance-type")
        given = {
            name: options[name] for name in SERVERLESS_OPTIONS if options.get(name) is not None
        }
        serverless = ServerlessSpec(**given)
    if options.get("asynchronous"):
        if not options.get("output_s3"):
            raise LaunchError("--async needs --output-s3 s3://bucket/prefix/ for the results")
        asynchronous = AsyncSpec(
            output_s3=options["output_s3"],
            failure_s3=options.get("failure_s3"),
            success_topic=options.get("success_topic"),
            error_topic=options.get("error_topic"),
            max_concurrent_invocations=options.get("max_concurrent_invocations_per_instance"),
        )
    return serverless, asynchronous


def server_environment(spec: EndpointSpec) -> dict[str, str]:
    """The container's environment: the mode's server limits, then the user's ``--env``.

    Real-time endpoints keep the server's defaults (6 MB, 60 s: SageMaker's real-time limits). A
    user's payload limit above what the endpoint's mode carries is refused.
    """
    mode = spec.serverless or spec.asynchronous
    limits = (
        {PAYLOAD_ENV: str(mode.max_payload_mb), TIMEOUT_ENV: str(mode.timeout_s)} if mode else {}
    )
    environment = {**limits, **spec.environment}
    if PAYLOAD_ENV in spec.environment:
        raw = spec.environment[PAYLOAD_ENV]
        if not raw.isdigit() or not 1 <= int(raw) <= spec.max_payload_mb:
            raise LaunchError(
                f"--env {PAYLOAD_ENV}={raw}: {spec.mode} endpoints take 1-{spec.max_payload_mb} "
                "(MB per request)"
            )
    return environment


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
            "Environment": server_environment(spec),
        },
        "ExecutionRoleArn": spec.role_arn,
        "Tags": [defaults.TOOL_TAG],
    }


def endpoint_config_request(spec: EndpointSpec) -> dict[str, Any]:
    variant: dict[str, Any] = {"VariantName": VARIANT, "ModelName": spec.name}
    if spec.serverless:
        variant["ServerlessConfig"] = spec.serverless.config()
    else:
        if spec.instance_count < 1:
            raise LaunchError(f"instance count must be >= 1; got {spec.instance_count}")
        variant |= {"InstanceType": spec.instance_type, "InitialInstanceCount": spec.instance_count}
    request = {
        "EndpointConfigName": spec.name,
        "ProductionVariants": [variant],
        "Tags": [defaults.TOOL_TAG],
    }
    if spec.asynchronous:
        request["AsyncInferenceConfig"] = spec.asynchronous.config()
    return request


def check(spec: EndpointSpec, local: bool = False) -> None:
    """Every check the requests make, before the first of them is sent."""
    model_request(spec, local)
    endpoint_config_request(spec)
    if spec.autoscaling:
        autoscaling_requests(spec.name, spec.autoscaling, spec.asynchronous is not None)


def deploy(aws: Aws, spec: EndpointSpec, wait: bool = True) -> dict[str, Any]:
    """Create model, endpoint config and endpoint; with ``wait``, return once it is InService.

    Autoscaling needs an InService endpoint, so it implies waiting. In local mode the endpoint
    is a docker container on this machine, InService when the call returns.
    """
    check(spec, local=aws.local)
    sm = aws.sagemaker
    sm.create_model(**model_request(spec, local=aws.local))
    sm.create_endpoint_config(**endpoint_config_request(spec))
    sm.create_endpoint(
        EndpointName=spec.name, EndpointConfigName=spec.name, Tags=[defaults.TOOL_TAG]
    )
    if aws.local:
        return sm.describe_endpoint(EndpointName=spec.name)
    if wait or spec.autoscaling:
        wait_in_service(aws, spec.name)
    if spec.autoscaling:
        apply_autoscaling(aws, spec.name, spec.autoscaling, spec.asynchronous is not None)
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


def missing(error: ClientError) -> bool:
    """Whether a SageMaker (or Application Auto Scaling) error says the resource does not exist."""
    message = error.response.get("Error", {}).get("Message", "")
    return error.response.get("Error", {}).get("Code") in (
        "ValidationException",
        "ResourceNotFound",
        "ObjectNotFoundException",
    ) and ("Could not find" in message or "does not exist" in message or "No " in message)


def made_by_tool(sagemaker: Any, arn: str) -> bool:
    """Whether the resource carries :data:`dogbreed.launch.defaults.TOOL_TAG`."""
    tag = defaults.TOOL_TAG
    for page in sagemaker.get_paginator("list_tags").paginate(ResourceArn=arn):
        for found in page.get("Tags", []):
            if found["Key"] == tag["Key"] and found.get("Value") == tag["Value"]:
                return True
    return False


def describe_or_none(call: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any] | None:
    """A describe call's answer, or None when the resource does not exist."""
    try:
        return call(**request)
    except ClientError as error:
        if missing(error):
            return None
        raise


NOT_OURS = f"no {defaults.TOOL_TAG['Key']} tag: dogbreed did not create it"


@dataclass(frozen=True)
class Resource:
    kind: str  # "endpoint", "endpoint config" or "model"
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class CleanupPlan:
    """What ``dogbreed cleanup NAME`` deletes (in order), what it keeps and why."""

    name: str
    delete: list[Resource] = field(default_factory=list)
    keep: list[tuple[Resource, str]] = field(default_factory=list)
    scaling_target: bool = False  # the endpoint's autoscaling target (its policies go with it)
    wake_alarm: bool = False  # the async endpoint's wake-from-zero alarm

    @property
    def count(self) -> int:
        return len(self.delete) + self.scaling_target + self.wake_alarm

    def lines(self) -> list[str]:
        doomed = []
        if self.scaling_target:
            doomed.append(f"autoscaling target {resource_id(self.name)} and its policies")
        if self.wake_alarm:
            doomed.append(f"CloudWatch alarm {wake_alarm_name(self.name)}")
        doomed += [str(resource) for resource in self.delete]
        lines = [f"will delete {item}" for item in doomed]
        return lines + [f"keeping {resource}: {why}" for resource, why in self.keep]


def _users_of_config(sm: Any, config: str, leaving: str | None) -> list[str]:
    """The endpoints (but ``leaving``) serving ``config``, or being updated to it."""
    users = []
    for page in sm.get_paginator("list_endpoints").paginate():
        for summary in page["Endpoints"]:
            name = summary["EndpointName"]
            if name == leaving:
                continue
            endpoint = describe_or_none(sm.describe_endpoint, EndpointName=name) or {}
            pending = endpoint.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
            if config in (endpoint.get("EndpointConfigName"), pending):
                users.append(name)
    return users


def _models_of(config: Mapping[str, Any]) -> set[str]:
    variants = [*config.get("ProductionVariants", []), *config.get("ShadowProductionVariants", [])]
    return {variant["ModelName"] for variant in variants if "ModelName" in variant}


def _users_of_models(sm: Any, models: Iterable[str], leaving: str | None) -> dict[str, list[str]]:
    """Per model: the endpoint configs (but ``leaving``) and running transform jobs using it."""
    users: dict[str, list[str]] = {model: [] for model in models}
    for page in sm.get_paginator("list_endpoint_configs").paginate():
        for summary in page["EndpointConfigs"]:
            name = summary["EndpointConfigName"]
            if name == leaving:
                continue
            config = describe_or_none(sm.describe_endpoint_config, EndpointConfigName=name) or {}
            for model in _models_of(config) & users.keys():
                users[model].append(f"endpoint config {name}")
    running = sm.get_paginator("list_transform_jobs").paginate(StatusEquals="InProgress")
    for page in running:
        for summary in page["TransformJobSummaries"]:
            name = summary["TransformJobName"]
            job = describe_or_none(sm.describe_transform_job, TransformJobName=name) or {}
            if job.get("ModelName") in users:
                users[job["ModelName"]].append(f"running transform job {name}")
    return users


def plan_cleanup(aws: Aws, endpoint: str) -> CleanupPlan:
    """What cleaning up ``endpoint`` means: its endpoint, config and models (the name is also
    tried as a config and a model name, so a half-finished deploy is found too), each deleted
    only if it carries our tag and nothing else uses it; its autoscaling target and wake alarm
    go with an endpoint that is ours or already gone. Nothing is deleted here.

    In local mode (docker on this machine) the resources exist only in this process and have no
    tags: everything found goes.
    """
    sm = aws.sagemaker
    plan = CleanupPlan(endpoint)
    found: list[tuple[Resource, dict[str, Any], str]] = []  # resource, description, ARN key
    described = describe_or_none(sm.describe_endpoint, EndpointName=endpoint)
    if described is not None:
        found.append((Resource("endpoint", endpoint), described, "EndpointArn"))
    config_name = described["EndpointConfigName"] if described else endpoint
    config = describe_or_none(sm.describe_endpoint_config, EndpointConfigName=config_name)
    if config is not None:
        found.append((Resource("endpoint config", config_name), config, "EndpointConfigArn"))
    for model in sorted({endpoint} | _models_of(config or {})):
        model_description = describe_or_none(sm.describe_model, ModelName=model)
        if model_description is not None:
            found.append((Resource("model", model), model_description, "ModelArn"))
    if aws.local:
        plan.delete = [resource for resource, _, _ in found]
        return plan
    ours = []
    for resource, description, arn in found:
        if made_by_tool(sm, description[arn]):
            ours.append(resource)
        else:
            plan.keep.append((resource, NOT_OURS))
    leaving_endpoint = Resource("endpoint", endpoint) in ours
    candidate_config = Resource("endpoint config", config_name)
    if candidate_config in ours:
        users = _users_of_config(sm, config_name, endpoint if leaving_endpoint else None)
        if users:
            ours.remove(candidate_config)
            plan.keep.append((candidate_config, f"used by endpoint {', '.join(users)}"))
    models = [resource.name for resource in ours if resource.kind == "model"]
    if models:
        leaving_config = config_name if candidate_config in ours else None
        for model, users in _users_of_models(sm, models, leaving_config).items():
            if users:
                ours.remove(Resource("model", model))
                plan.keep.append((Resource("model", model), f"used by {', '.join(users)}"))
    plan.delete = ours
    if leaving_endpoint or described is None:
        plan.scaling_target, plan.wake_alarm = find_autoscaling(aws, endpoint)
    return plan


def apply_cleanup(aws: Aws, plan: CleanupPlan) -> list[str]:
    """Delete what ``plan`` lists (autoscaling first, then endpoint, config, models); what is
    already gone is skipped. Returns what went."""
    removed: list[str] = []
    if plan.scaling_target or plan.wake_alarm:
        removed += remove_autoscaling(aws, plan.name, plan.scaling_target, plan.wake_alarm, missing)
    sm = aws.sagemaker
    deleters = {
        "endpoint": lambda name: sm.delete_endpoint(EndpointName=name),
        "endpoint config": lambda name: sm.delete_endpoint_config(EndpointConfigName=name),
        "model": lambda name: sm.delete_model(ModelName=name),
    }
    for resource in plan.delete:
        try:
            deleters[resource.kind](resource.name)
            removed.append(str(resource))
        except ClientError as error:
            if not missing(error):
                raise
    return removed


def cleanup(aws: Aws, endpoint: str) -> list[str]:
    """:func:`plan_cleanup` then :func:`apply_cleanup`, without asking (the command line asks)."""
    return apply_cleanup(aws, plan_cleanup(aws, endpoint))
