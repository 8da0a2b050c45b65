"""Serverless Inference: a production variant with a ServerlessConfig instead of instances.

It bills per millisecond of compute and per GB of data, and nothing while idle, at the price of
cold starts; CPU only. Limits, from ProductionVariantServerlessConfig
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariantServerlessConfig.html):
MemorySizeInMB 1024-6144 in 1 GB steps, MaxConcurrency 1-200, ProvisionedConcurrency 1-200 and at
most MaxConcurrency. A request and its response hold at most 4 MB, and the container must answer
/invocations within 60 s and /ping within 3 minutes of starting
(https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dogbreed.contract import SERVERLESS_MAX_PAYLOAD_MB
from dogbreed.launch.errors import LaunchError

MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
MAX_CONCURRENCY = 200
#: The container must answer /invocations within a minute.
TIMEOUT_S = 60


@dataclass(frozen=True)
class ServerlessSpec:
    """Memory per invocation environment and concurrent invocations; checked when made."""

    memory_mb: int = 2048
    max_concurrency: int = 5
    provisioned_concurrency: int | None = None
    #: What the server must accept and how long it may take: SageMaker's serverless limits.
    max_payload_mb: ClassVar[int] = SERVERLESS_MAX_PAYLOAD_MB
    timeout_s: ClassVar[int] = TIMEOUT_S

    def __post_init__(self) -> None:
        if self.memory_mb not in MEMORY_SIZES_MB:
            sizes = ", ".join(str(size) for size in MEMORY_SIZES_MB)
            raise LaunchError(
                f"--memory-mb {self.memory_mb}: Serverless Inference takes one of {sizes}"
            )
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise LaunchError(
                f"--max-concurrency {self.max_concurrency}: Serverless Inference takes "
                f"1-{MAX_CONCURRENCY} (your account's total may be lower; see Service Quotas)"
            )
        provisioned = self.provisioned_concurrency
        if provisioned is not None and not 1 <= provisioned <= self.max_concurrency:
            raise LaunchError(
                f"--provisioned-concurrency {provisioned}: must be 1 to --max-concurrency "
                f"({self.max_concurrency})"
            )

    def config(self) -> dict[str, Any]:
        """The variant's ``ServerlessConfig``."""
        config = {"MemorySizeInMB": self.memory_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned_concurrency is not None:
            config["ProvisionedConcurrency"] = self.provisioned_concurrency
        return config
