"""Query an endpoint: image files -> the top-k breeds, through ``sagemaker-runtime``.

Files are checked locally first (a real JPEG or PNG, at most SageMaker's 6 MB payload), so a
wrong file costs no request; AWS errors are turned into messages that say what to do.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image, UnidentifiedImageError

from dogbreed.contract import MIB, REALTIME_MAX_PAYLOAD_MB
from dogbreed.launch import LaunchError
from dogbreed.launch.session import Aws

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class ImageFile:
    path: Path
    data: bytes
    content_type: str


def read_image(path: str | Path) -> ImageFile:
    """Read and check one file: it must exist and be a JPEG or PNG that PIL can decode."""
    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise LaunchError(f"{path}: the file is empty")
    if size > REALTIME_MAX_PAYLOAD_MB * MIB:
        raise LaunchError(
            f"{path}: {size} bytes is over SageMaker's {REALTIME_MAX_PAYLOAD_MB} MB real-time "
            "payload limit; "
            "resize it or use `dogbreed transform`"
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
    if code == "ValidationError" and ("not found" in message or "Could not find" in message):
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
    body = response["Body"].read()
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
    try:
        document = json.loads(body)
    except ValueError:
        raise LaunchError(f"{endpoint!r} answered with non-JSON: {body[:200]!r}") from None
    if status >= 400 or "predictions" not in document:
        raise LaunchError(f"the model on {endpoint!r} rejected {image.path}: {document}")
    return document["predictions"][0]


def format_predictions(path: Path, predictions: list[dict[str, Any]]) -> str:
    lines = [f"{path}:"]
    lines += [
        f"  {rank}. {p['label']:<40} {p['probability']:.4f}"
        for rank, p in enumerate(predictions, start=1)
    ]
    return "\n".join(lines)
