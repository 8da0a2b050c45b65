"""Asynchronous Inference: requests queue in SageMaker, inputs and outputs live in S3.

An async endpoint takes payloads up to 1 GB and processing up to one hour
(https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference.html; InvokeEndpointAsync's
InvocationTimeoutSeconds goes up to 3600), and it can scale to zero instances when its queue is
empty (:mod:`dogbreed.launch.endpoints.autoscaling`). The server's own limits follow: the deploy sets its
``SAGEMAKER_MAX_PAYLOAD_IN_MB`` to 1 GB and ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` to an hour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from dogbreed.contract import ASYNC_MAX_PAYLOAD_MB
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import check_s3_prefix

#: The longest an async request may be processed (InvocationTimeoutSeconds' maximum).
MAX_PROCESSING_S = 3600
#: What AWS takes per instance for ClientConfig.MaxConcurrentInvocationsPerInstance.
MAX_CONCURRENT_INVOCATIONS = 1000
SNS_TOPIC = re.compile(r"^arn:aws[a-z\-]*:sns:[a-z0-9\-]+:[0-9]{12}:[a-zA-Z0-9_.-]{1,256}$")


def beside(prefix: str, name: str) -> str:
    """``s3://b/dogs/output/`` -> ``s3://b/dogs/<name>/``; a bucket root -> ``s3://b/<name>/``."""
    bucket, _, key = prefix.removeprefix("s3://").partition("/")
    parent = key.rstrip("/").rpartition("/")[0]
    return f"s3://{bucket}/{parent + '/' if parent else ''}{name}/"


@dataclass(frozen=True)
class AsyncSpec:
    """Where results go, who hears of them, and how many requests an instance takes at once."""

    output_s3: str
    failure_s3: str | None = None  # default: failures/ beside the output prefix
    success_topic: str | None = None
    error_topic: str | None = None
    max_concurrent_invocations: int | None = None  # None: SageMaker chooses
    #: What the server must accept and how long it may take: AWS's async limits.
    max_payload_mb: ClassVar[int] = ASYNC_MAX_PAYLOAD_MB
    timeout_s: ClassVar[int] = MAX_PROCESSING_S

    def __post_init__(self) -> None:
        check_s3_prefix(self.output_s3, "--output-s3")
        if self.failure_s3:
            check_s3_prefix(self.failure_s3, "--failure-s3")
        for flag, topic in (
            ("--success-topic", self.success_topic),
            ("--error-topic", self.error_topic),
        ):
            if topic and not SNS_TOPIC.match(topic):
                raise LaunchError(
                    f"{flag} must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>); "
                    f"got {topic!r}"
                )
        count = self.max_concurrent_invocations
        if count is not None and not 1 <= count <= MAX_CONCURRENT_INVOCATIONS:
            raise LaunchError(
                f"--max-concurrent-invocations-per-instance {count}: SageMaker takes "
                f"1-{MAX_CONCURRENT_INVOCATIONS}"
            )

    @property
    def failure_prefix(self) -> str:
        return (
            check_s3_prefix(self.failure_s3, "--failure-s3")
            if self.failure_s3
            else beside(self.output_s3, "failures")
        )

    def config(self) -> dict[str, Any]:
        """The endpoint config's ``AsyncInferenceConfig``."""
        output: dict[str, Any] = {
            "S3OutputPath": check_s3_prefix(self.output_s3, "--output-s3"),
            "S3FailurePath": self.failure_prefix,
        }
        topics = {"SuccessTopic": self.success_topic, "ErrorTopic": self.error_topic}
        if any(topics.values()):
            output["NotificationConfig"] = {key: arn for key, arn in topics.items() if arn}
        config: dict[str, Any] = {"OutputConfig": output}
        if self.max_concurrent_invocations is not None:
            config["ClientConfig"] = {
                "MaxConcurrentInvocationsPerInstance": self.max_concurrent_invocations
            }
        return config
