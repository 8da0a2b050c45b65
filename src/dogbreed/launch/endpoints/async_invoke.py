"""Query an async endpoint: upload each image to S3, InvokeEndpointAsync, wait for its output.

SageMaker queues the request, and writes the server's answer to the returned OutputLocation, or
an error to FailureLocation (https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-invoke-endpoint.html).
Every wait has a bound: the client's ``timeout_s``, which is also sent as the request's
InvocationTimeoutSeconds (at most 3600) and RequestTTLSeconds (60-21600), so a request the client
gave up on expires in SageMaker's queue too instead of running later. An endpoint scaled to zero
takes minutes to wake (two one-minute alarm periods, then an instance start).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.endpoints.async_endpoint import MAX_PROCESSING_S, beside
from dogbreed.launch.endpoints.invoke import ImageFile, Target, predictions_in
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll
from dogbreed.launch.session import Aws, check_s3_prefix

DEFAULT_TIMEOUT_S = 900
POLL_INTERVAL_S = 5.0
#: RequestTTLSeconds' range.
TTL_RANGE_S = (60, 21600)
SUFFIXES = {"image/jpeg": ".jpg", "image/png": ".png"}


@dataclass(frozen=True)
class Submitted:
    image: ImageFile
    output_location: str
    failure_location: str | None


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def input_prefix(target: Target, given: str | None) -> str:
    """Where inputs go: ``given`` (``--input-s3``), else ``input/`` beside the output prefix."""
    if given:
        return check_s3_prefix(given, "--input-s3")
    if not target.output_s3:
        raise LaunchError(f"{target.endpoint!r} is not an async endpoint: it has no output path")
    return beside(target.output_s3, "input")


def input_uri(prefix: str, image: ImageFile) -> str:
    """One key per content (its SHA-256): sending the same file twice uploads the same object."""
    digest = hashlib.sha256(image.data).hexdigest()[:32]
    return f"{prefix}{digest}{SUFFIXES[image.content_type]}"


def submit(
    aws: Aws, target: Target, image: ImageFile, prefix: str, top_k: int, timeout_s: float
) -> Submitted:
    """Upload the image and queue one inference on it."""
    target.check(image)
    uri = input_uri(prefix, image)
    bucket, key = split_s3(uri)
    aws.client("s3").put_object(
        Bucket=bucket, Key=key, Body=image.data, ContentType=image.content_type
    )
    low, high = TTL_RANGE_S
    try:
        response = aws.runtime.invoke_endpoint_async(
            EndpointName=target.endpoint,
            InputLocation=uri,
            ContentType=image.content_type,
            Accept="application/json",
            CustomAttributes=f"top_k={top_k}",
            InvocationTimeoutSeconds=int(min(max(timeout_s, 1), MAX_PROCESSING_S)),
            RequestTTLSeconds=int(min(max(timeout_s, low), high)),
        )
    except ClientError as error:
        info = error.response.get("Error", {})
        raise LaunchError(
            f"queueing {image.path} on {target.endpoint!r} failed "
            f"({info.get('Code', 'error')}): {info.get('Message', error)}"
        ) from None
    return Submitted(image, response["OutputLocation"], response.get("FailureLocation"))


def _read(aws: Aws, uri: str) -> bytes | None:
    """The object's bytes, or None while it does not exist."""
    bucket, key = split_s3(uri)
    try:
        return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def result(
    aws: Aws,
    target: Target,
    submitted: Submitted,
    timeout_s: float,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Poll the output (and failure) location every few seconds, for at most ``timeout_s``."""

    def probe() -> list[dict[str, Any]] | None:
        output = _read(aws, submitted.output_location)
        if output is not None:
            return predictions_in(output, target.endpoint, submitted.image.path)
        failure = submitted.failure_location and _read(aws, submitted.failure_location)
        if failure:
            raise LaunchError(
                f"{target.endpoint!r} failed on {submitted.image.path}: "
                f"{failure[:500].decode(errors='replace')}"
            )
        return None

    return poll(
        probe,
        f"the result of {submitted.image.path} at {submitted.output_location}",
        timeout_s,
        POLL_INTERVAL_S,
        clock=clock or time.monotonic,
        sleep=sleep,
    )


def invoke_async(
    aws: Aws,
    target: Target,
    images: Sequence[ImageFile],
    prefix: str,
    top_k: int = 5,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> Iterator[tuple[ImageFile, list[dict[str, Any]]]]:
    """Queue every image first (one wake-up serves them all), then yield each image's top-k as it
    is ready, in order, all within ``timeout_s``."""
    if top_k < 1:
        raise LaunchError(f"top-k must be >= 1; got {top_k}")
    clock = clock or time.monotonic
    deadline = clock() + timeout_s
    queued = [submit(aws, target, image, prefix, top_k, timeout_s) for image in images]
    for submitted in queued:
        yield submitted.image, result(aws, target, submitted, deadline - clock(), clock, sleep)
