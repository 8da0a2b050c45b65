"""What one training job needs, as data: the input of :mod:`.jobs` and :mod:`.preflight`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dogbreed.launch import defaults
from dogbreed.launch.training.debugger import DebuggerSettings


@dataclass(frozen=True)
class TrainingJobSpec:
    """Everything one training job needs; :func:`training_job_request` turns it into the API call."""

    name: str
    image_uri: str
    role_arn: str
    output_s3: str
    channels: Mapping[str, str]
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    instance_type: str = defaults.TRAINING_INSTANCE_TYPE
    instance_count: int = 1
    volume_gb: int = defaults.VOLUME_GB
    max_runtime_s: int = defaults.MAX_RUNTIME_S
    input_mode: str = "File"
    spot: bool = False
    max_wait_s: int | None = None
    checkpoint_s3: str | None = None
    debugger: DebuggerSettings | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
