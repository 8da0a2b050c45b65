"""Where requests go: an AWS account and region (boto3), or SageMaker's local mode (docker)."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError, ProfileNotFound

from dogbreed.launch.errors import LaunchError

ROLE_ENV = "DOGBREED_ROLE_ARN"
ROLE_PATTERN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]{1,512}$")
#: Role ARN sent in local mode, where nothing checks it.
LOCAL_ROLE = "arn:aws:iam::000000000000:role/dogbreed-local"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: How long ``sagemaker-runtime`` waits for an answer. A model has 60 s to answer /invocations,
#: and botocore's default read timeout is those same 60 s, so an answer near the limit could come
#: after the client gave up; AWS's InvokeEndpoint reference asks for a socket timeout of about 70 s
#: (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html).
INVOKE_READ_TIMEOUT_S = 70.0
#: One attempt per invocation: botocore's retries (legacy mode: up to 5 attempts, on read timeouts
#: and 5xx answers too) re-send a request the model may already be running, and every run of a
#: serverless endpoint is billed. A retry is safe only before the request left, and botocore
#: cannot tell a read timeout from that; so none.
INVOKE_RETRIES = {"mode": "standard", "total_max_attempts": 1}
#: SageMaker SDK defaults for local mode: no telemetry requests.
SDK_CONFIG = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


@dataclass
class Aws:
    """A boto3 session and its region, with one client per service.

    ``local=True`` swaps the ``sagemaker`` and ``sagemaker-runtime`` clients for the SDK's
    local-mode ones: same method names and request shapes, executed with docker on this machine.
    """

    session: boto3.Session
    region: str
    local: bool = False
    local_config: dict[str, Any] | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def connect(cls, region: str | None = None, profile: str | None = None) -> Aws:
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
        except ProfileNotFound as error:
            raise LaunchError(f"AWS profile not found: {error}") from None
        if not session.region_name:
            raise LaunchError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
        return cls(session=session, region=session.region_name)

    @classmethod
    def local_mode(cls, region: str = "us-east-1", config: dict[str, Any] | None = None) -> Aws:
        """Local mode: SageMaker requests run as docker containers here (no AWS call for
        ``file://`` data and locally present images)."""
        session = boto3.Session(region_name=region)
        return cls(session=session, region=region, local=True, local_config=config)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            if self.local and service in ("sagemaker", "sagemaker-runtime"):
                self._open_local()
            else:
                config = runtime_config() if service == "sagemaker-runtime" else None
                try:
                    self._clients[service] = self.session.client(
                        service, region_name=self.region, config=config
                    )
                except NoRegionError:
                    raise LaunchError("no AWS region: pass --region") from None
        return self._clients[service]

    def _open_local(self) -> None:
        from sagemaker.core.local import LocalSession  # heavy import: only in local mode

        # The SDK reports usage to an S3 endpoint unless told not to: local mode stays local.
        local = LocalSession(boto_session=self.session, sagemaker_config=SDK_CONFIG)
        if self.local_config is not None:
            local.config = self.local_config
        self._clients["sagemaker"] = local.sagemaker_client
        self._clients["sagemaker-runtime"] = local.sagemaker_runtime_client

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @property
    def runtime(self) -> Any:
        return self.client("sagemaker-runtime")


def runtime_config() -> Config:
    """The ``sagemaker-runtime`` client's settings: :data:`INVOKE_READ_TIMEOUT_S` (read when the
    client is made, so a test can shorten it) and :data:`INVOKE_RETRIES`."""
    return Config(read_timeout=INVOKE_READ_TIMEOUT_S, retries=dict(INVOKE_RETRIES))


def resolve_role(role: str | None, aws: Aws) -> str:
    """The execution role ARN from ``--role`` or ``$DOGBREED_ROLE_ARN``; checked for shape."""
    if aws.local:
        return role or LOCAL_ROLE
    role = role or os.environ.get(ROLE_ENV)
    if not role:
        raise LaunchError(
            f"no SageMaker execution role: pass --role ARN or set {ROLE_ENV} "
            "(an IAM role SageMaker can assume, e.g. with AmazonSageMakerFullAccess)"
        )
    if not ROLE_PATTERN.match(role):
        raise LaunchError(
            f"--role must be an IAM role ARN (arn:aws:iam::<account>:role/<name>); got {role!r}"
        )
    return role


def unique_name(base: str, max_length: int = 63) -> str:
    """``base-YYMMDD-HHMMSS-mmm``, cut to SageMaker's name limit (32 for tuning jobs, else 63)."""
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime()) + f"-{int(time.time() * 1000) % 1000:03d}"
    base = base[: max_length - len(stamp) - 1].rstrip("-")
    return check_name(f"{base}-{stamp}", max_length)


def check_name(name: str, max_length: int = 63) -> str:
    if len(name) > max_length or not NAME_PATTERN.match(name):
        raise LaunchError(
            f"invalid SageMaker name {name!r}: 1-{max_length} letters, digits and single hyphens, "
            "starting with a letter or digit"
        )
    return name


def check_s3_uri(uri: str, what: str, allow_file: bool = False) -> str:
    """An ``s3://bucket/key`` URI (or ``file://`` where local mode allows it)."""
    if uri.startswith("s3://") and len(uri) > 5 and not uri[5:].startswith("/"):
        return uri
    if allow_file and uri.startswith("file://"):
        return uri
    allowed = "s3://bucket/prefix" + (" or file:///path" if allow_file else "")
    raise LaunchError(f"{what} must be {allowed}; got {uri!r}")


def check_s3_prefix(uri: str, what: str, allow_file: bool = False) -> str:
    """:func:`check_s3_uri` for a prefix SageMaker reads every key under, ending in ``/``.

    ``s3://bucket/dogImages`` would also match ``dogImages.zip`` and ``dogImages-old/``.
    """
    uri = check_s3_uri(uri, what, allow_file)
    return uri if not uri.startswith("s3://") or uri.endswith("/") else f"{uri}/"
