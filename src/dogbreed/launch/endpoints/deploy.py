"""Endpoints: model -> endpoint config -> endpoint (real-time, serverless or async), and cleanup.

One name is used for all three resources, so ``dogbreed cleanup NAME`` can find and remove
every one of them (and the autoscaling target and alarm) without a state file. All three carry
:data:`dogbreed.launch.defaults.TOOL_TAG`, so the launcher's endpoints can be listed by tag.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    remove_autoscaling,
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


def _missing(error: ClientError) -> bool:
    message = error.response.get("Error", {}).get("Message", "")
    return error.response.get("Error", {}).get("Code") in (
        "ValidationException",
        "ResourceNotFound",
        "ObjectNotFoundException",
    ) and ("Could not find" in message or "does not exist" in message or "No " in message)


def cleanup(aws: Aws, endpoint: str) -> list[str]:
    """Delete the endpoint, its config, its models, its autoscaling target and wake alarm; list
    what went.

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
        removed += remove_autoscaling(aws, endpoint, _missing)
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
