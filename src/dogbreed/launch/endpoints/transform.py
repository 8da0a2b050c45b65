"""Batch transform: every image under an S3 prefix -> one JSON prediction file per image.

Each object is sent whole (``SplitType=None``, one record per request) as
``application/x-image``; the server sniffs JPEG/PNG itself. Results land next to each other
under the output prefix as ``<key>.out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dogbreed.contract import BATCH_MAX_PAYLOAD_MB, REALTIME_MAX_PAYLOAD_MB
from dogbreed.launch import defaults
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll, raise_if_failed
from dogbreed.launch.session import Aws, check_name, check_s3_prefix, check_s3_uri

#: How long a wait allows a transform job, which has no stopping condition: a day, against the
#: ~10 minutes of docs/aws.md's example.
WAIT_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class TransformSpec:
    name: str
    model_name: str
    input_uri: str
    output_uri: str
    instance_type: str = defaults.SERVING_INSTANCE_TYPE
    instance_count: int = 1
    max_concurrent: int = 0  # 0: let SageMaker ask the container (/execution-parameters)
    max_payload_mb: int = REALTIME_MAX_PAYLOAD_MB


def transform_request(spec: TransformSpec, local: bool = False) -> dict[str, Any]:
    check_name(spec.name)
    check_name(spec.model_name)
    if not 1 <= spec.max_payload_mb <= BATCH_MAX_PAYLOAD_MB:
        raise LaunchError(
            f"max payload must be 1-{BATCH_MAX_PAYLOAD_MB} MB; got {spec.max_payload_mb}"
        )
    if spec.instance_count < 1:
        raise LaunchError(f"instance count must be >= 1; got {spec.instance_count}")
    if spec.max_concurrent < 0:
        raise LaunchError(f"max concurrent transforms must be >= 0; got {spec.max_concurrent}")
    if spec.max_concurrent * spec.max_payload_mb > BATCH_MAX_PAYLOAD_MB:
        raise LaunchError(
            f"max concurrent transforms x max payload must be <= {BATCH_MAX_PAYLOAD_MB} MB; "
            f"got {spec.max_concurrent} x {spec.max_payload_mb} MB"
        )
    request: dict[str, Any] = {
        "TransformJobName": spec.name,
        "ModelName": spec.model_name,
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": spec.max_payload_mb,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": check_s3_prefix(spec.input_uri, "the input prefix", allow_file=local),
                }
            },
            "ContentType": "application/x-image",
            "SplitType": "None",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": check_s3_uri(spec.output_uri, "the output prefix", allow_file=local),
            "Accept": "application/json",
            "AssembleWith": "None",
        },
        "TransformResources": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
        },
    }
    if spec.max_concurrent:
        request["MaxConcurrentTransforms"] = spec.max_concurrent
    return request


def start_transform(aws: Aws, spec: TransformSpec) -> dict[str, Any]:
    """Send ``CreateTransformJob`` (in local mode: run it to the end in docker)."""
    request = transform_request(spec, local=aws.local)
    aws.sagemaker.create_transform_job(**request)
    return request


def wait_for_transform(
    aws: Aws, name: str, timeout_s: float = WAIT_TIMEOUT_S, poll_s: float = 30.0
) -> dict[str, Any]:
    """Poll ``DescribeTransformJob`` until the job ends; raise with its FailureReason if it failed."""

    def probe() -> dict[str, Any] | None:
        job = aws.sagemaker.describe_transform_job(TransformJobName=name)
        status = job["TransformJobStatus"]
        raise_if_failed(job, status, f"transform job {name}")
        return job if status == "Completed" else None

    return poll(probe, f"transform job {name} to end", timeout_s, poll_s)
