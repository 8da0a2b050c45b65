"""Stubbed SageMaker answers and expected requests for the endpoint tests (deploy, invoke, cleanup).

Every expected request goes through botocore's Stubber, which validates it against the service
model before comparing it with what the launcher sent.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

from botocore.response import StreamingBody
from botocore.stub import Stubber

from dogbreed.launch.defaults import TOOL_TAG

from .conftest import ROLE, SERVE_IMAGE

SLIM_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-serve-slim:1.0"
MODEL_DATA = "s3://bucket/runs/dogbreed-train-1/output/model.tar.gz"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:thing/"
NAME = {"EndpointName": "dogs"}
TAGS = [TOOL_TAG]
DEPLOY_ARGS = ["deploy", "--model-data", MODEL_DATA, "--role", ROLE, "--name", "dogs"]
TOP = [
    {"label": "001.Affenpinscher", "class_index": 0, "probability": 0.7},
    {"label": "003.Airedale_terrier", "class_index": 2, "probability": 0.2},
    {"label": "002.Afghan_hound", "class_index": 1, "probability": 0.1},
]


def endpoint(status: str) -> dict:
    return {
        "EndpointName": "dogs",
        "EndpointArn": ARN + "e",
        "EndpointConfigName": "dogs",
        "EndpointStatus": status,
        "CreationTime": datetime(2026, 1, 1),
        "LastModifiedTime": datetime(2026, 1, 1),
    }


def streaming(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def predictions_json(rows: list[list[dict]]) -> bytes:
    return json.dumps({"predictions": rows}).encode()


def stub_deploy(
    sm: Stubber,
    image: str,
    variant: dict[str, Any],
    environment: dict[str, str] | None = None,
    **config: Any,
) -> None:
    """CreateModel, CreateEndpointConfig (``variant`` beside its name and model, ``config`` on
    top) and CreateEndpoint, each tagged with the launcher's tag."""
    sm.add_response(
        "create_model",
        {"ModelArn": ARN + "m"},
        {
            "ModelName": "dogs",
            "PrimaryContainer": {
                "Image": image,
                "ModelDataUrl": MODEL_DATA,
                "Environment": environment or {},
            },
            "ExecutionRoleArn": ROLE,
            "Tags": TAGS,
        },
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": ARN + "c"},
        {
            "EndpointConfigName": "dogs",
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "dogs", **variant}],
            "Tags": TAGS,
            **config,
        },
    )
    sm.add_response(
        "create_endpoint",
        {"EndpointArn": ARN + "e"},
        {"EndpointName": "dogs", "EndpointConfigName": "dogs", "Tags": TAGS},
    )


def stub_config_description(
    sm: Stubber, model: str, variant: dict[str, Any] | None = None, **config: Any
) -> None:
    """DescribeEndpointConfig of ``dogs``: one variant serving ``model``."""
    sm.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": "dogs",
            "EndpointConfigArn": ARN + "c",
            "CreationTime": datetime(2026, 1, 1),
            "ProductionVariants": [
                {"VariantName": "AllTraffic", "ModelName": model, **(variant or {})}
            ],
            **config,
        },
        {"EndpointConfigName": "dogs"},
    )


def stub_target(
    sm: Stubber,
    variant: dict[str, Any] | None = None,
    environment: dict[str, str] | None = None,
    **config: Any,
) -> None:
    """DescribeEndpoint, DescribeEndpointConfig and DescribeModel: what ``invoke`` reads first."""
    sm.add_response("describe_endpoint", endpoint("InService"), NAME)
    stub_config_description(sm, "dogs-model", variant, **config)
    sm.add_response(
        "describe_model",
        {
            "ModelName": "dogs-model",
            "ModelArn": ARN + "m",
            "CreationTime": datetime(2026, 1, 1),
            "PrimaryContainer": {"Image": SERVE_IMAGE, "Environment": environment or {}},
        },
        {"ModelName": "dogs-model"},
    )
