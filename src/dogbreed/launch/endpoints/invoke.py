"""Query an endpoint: image files -> the top-k breeds, through ``sagemaker-runtime``.

Files are checked locally first (a real JPEG or PNG, within the endpoint's payload limit), so a
wrong file costs no inference; AWS errors are turned into messages that say what to do. Which
limit applies, and whether the endpoint is asynchronous (:mod:`.async_invoke`), comes from its
endpoint config and model (:func:`describe_target`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, ReadTimeoutError
from PIL import Image, UnidentifiedImageError

from dogbreed.contract import (
    ASYNC_MAX_PAYLOAD_MB,
    MIB,
    REALTIME_MAX_PAYLOAD_MB,
    SERVERLESS_MAX_PAYLOAD_MB,
)
from dogbreed.launch.endpoints.deploy import PAYLOAD_ENV
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class ImageFile:
    path: Path
    data: bytes
    content_type: str


#: What to do about a file over each kind of endpoint's limit.
TOO_BIG_HINTS = {
    "real-time": "resize it, or use `dogbreed transform` or an --async endpoint",
    "serverless": "resize it, or use a real-time or --async endpoint",
    "async": "resize it",
}
#: The largest file any endpoint takes (async): checked before a file is read, so a huge one is
#: refused without filling memory.
LARGEST_PAYLOAD_MB = ASYNC_MAX_PAYLOAD_MB


@dataclass(frozen=True)
class Target:
    """An endpoint as ``invoke`` needs it: its kind, its payload limit, where async results go."""

    endpoint: str
    mode: str = "real-time"  # or "serverless", "async"
    max_payload_mb: int = REALTIME_MAX_PAYLOAD_MB
    output_s3: str | None = None  # async: the endpoint config's S3OutputPath

    def check(self, image: ImageFile) -> None:
        size = len(image.data)
        if size > self.max_payload_mb * MIB:
            raise LaunchError(
                f"{image.path}: {size} bytes is over the {self.max_payload_mb} MB payload limit "
                f"of {self.mode} endpoint {self.endpoint!r}; {TOO_BIG_HINTS[self.mode]}"
            )


def describe_target(aws: Aws, endpoint: str) -> Target:
    """Describe the endpoint, its config and its model: the mode, and the payload limit, which is
    the mode's (6 MB real-time, 4 MB serverless, 1 GB async) or the server's, if lower."""
    sm = aws.sagemaker
    try:
        config_name = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    except ClientError as error:
        raise _explain(error, endpoint, aws.region) from None
    config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    variant = config["ProductionVariants"][0]
    environment = sm.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"].get(
        "Environment", {}
    )
    server_mb = int(environment.get(PAYLOAD_ENV, REALTIME_MAX_PAYLOAD_MB))
    if "AsyncInferenceConfig" in config:
        output = config["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"]
        return Target(endpoint, "async", min(ASYNC_MAX_PAYLOAD_MB, server_mb), output)
    if "ServerlessConfig" in variant:
        return Target(endpoint, "serverless", min(SERVERLESS_MAX_PAYLOAD_MB, server_mb))
    return Target(endpoint, "real-time", min(REALTIME_MAX_PAYLOAD_MB, server_mb))


def read_image(path: str | Path, max_payload_mb: int = REALTIME_MAX_PAYLOAD_MB) -> ImageFile:
    """Read and check one file: it must exist, hold at most ``max_payload_mb`` and be a JPEG or
    PNG that PIL can decode."""
    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise LaunchError(f"{path}: the file is empty")
    if size > max_payload_mb * MIB:
        raise LaunchError(
            f"{path}: {size} bytes is over the {max_payload_mb} MB payload limit; resize it"
        )
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise LaunchError(f"{path}: not a readable image ({error})") from None
    if kind not in CONTENT_TYPES:
        raise LaunchError(f"{path}: a {kind} image; send JPEG or PNG")
    return ImageFile(path, data, CONTENT_TYPES[kind])


def _explain(error: ClientError, endpoint: str, region: str) -> LaunchError:
    info = error.response.get("Error", {})
    code, message = info.get("Code", ""), info.get("Message", str(error))
    missing = "not found" in message or "Could not find" in message
    if code in ("ValidationError", "ValidationException") and missing:
        return LaunchError(
            f"no endpoint named {endpoint!r} in {region}: deploy one with `dogbreed deploy`, or "
            "check --region and `aws sagemaker list-endpoints`"
        )
    if code == "ModelError":
        original = error.response.get("OriginalMessage") or message
        return LaunchError(f"the model on {endpoint!r} rejected the request: {original}")
    return LaunchError(f"invoking {endpoint!r} failed ({code or 'error'}): {message}")


def invoke(aws: Aws, endpoint: str, image: ImageFile, top_k: int = 5) -> list[dict[str, Any]]:
    """One ``InvokeEndpoint`` call; returns ``[{"label", "class_index", "probability"}, ...]``."""
    if top_k < 1:
        raise LaunchError(f"top-k must be >= 1; got {top_k}")
    try:
        response = aws.runtime.invoke_endpoint(
            EndpointName=endpoint,
            ContentType=image.content_type,
            Accept="application/json",
            CustomAttributes=f"top_k={top_k}",
            Body=image.data,
        )
    except ClientError as error:
        raise _explain(error, endpoint, aws.region) from None
    except ReadTimeoutError:
        raise LaunchError(
            f"{endpoint!r} sent no answer for {image.path} within "
            f"{aws.runtime.meta.config.read_timeout:g} s (a model has 60 s); not sent again, "
            "since the model may be running it: try again, or use an --async endpoint for slow "
            "requests"
        ) from None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
    return predictions_in(response["Body"].read(), endpoint, image.path, status)


def predictions_in(
    body: bytes, endpoint: str, path: Path, status: int = 200
) -> list[dict[str, Any]]:
    """The top-k list of one image from the server's JSON answer; errors name the file."""
    try:
        document = json.loads(body)
    except ValueError:
        raise LaunchError(f"{endpoint!r} answered with non-JSON: {body[:200]!r}") from None
    if status >= 400 or "predictions" not in document:
        raise LaunchError(f"the model on {endpoint!r} rejected {path}: {document}")
    return document["predictions"][0]


def format_predictions(path: Path, predictions: list[dict[str, Any]]) -> str:
    lines = [f"{path}:"]
    lines += [
        f"  {rank}. {p['label']:<40} {p['probability']:.4f}"
        for rank, p in enumerate(predictions, start=1)
    ]
    return "\n".join(lines)
