"""One training job: image, channels, hyperparameters, Debugger and Profiler, spot, DDP.

:func:`training_job_request` builds the exact ``CreateTrainingJob`` request; the Debugger and
Profiler fields come from :mod:`dogbreed.launch.training.debugger`, the metric regexes from
:mod:`dogbreed.metrics` (the trainer prints with the same module). More than one instance runs the image's torchrun DDP; every host receives the
whole data set (``FullyReplicated``) and the trainer shards it with a distributed sampler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dogbreed import metrics
from dogbreed.contract import CHECKPOINTS, OPT_ML
from dogbreed.launch.data.layout import check_layout
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll, raise_if_failed
from dogbreed.launch.session import Aws, check_name, check_s3_prefix, check_s3_uri
from dogbreed.launch.training.debugger import debugger_request
from dogbreed.launch.training.preflight import require_ready
from dogbreed.launch.training.spec import TrainingJobSpec

INPUT_MODES = ("File", "FastFile")
CHECKPOINT_LOCAL_PATH = str(OPT_ML / CHECKPOINTS)  # JobPaths.checkpoint_dir in the container
#: What a wait allows a job beyond its StoppingCondition: provisioning, image pull, model upload.
WAIT_SLACK_S = 3600


def hyperparameter_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Validate hyperparameters with the trainer's own parser; return them as SageMaker strings.

    Names may use ``-`` or ``_`` (``batch-size`` / ``batch_size``); they are sent in the
    trainer's CLI spelling (``batch-size``).
    """
    from dogbreed.hyperparams import HyperparameterError, cli_name, parse_hyperparameters

    strings = {cli_name(str(key).replace("-", "_")): str(value) for key, value in values.items()}
    argv = [item for key, value in strings.items() for item in (f"--{key}", value)]
    try:
        parse_hyperparameters(argv)
    except HyperparameterError as error:
        raise LaunchError(f"bad hyperparameter: {error}") from None
    return strings


def parse_key_values(items: Sequence[str], what: str) -> dict[str, str]:
    """``["lr=0.01", "epochs=3"]`` -> ``{"lr": "0.01", "epochs": "3"}``."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise LaunchError(f"{what} must look like NAME=VALUE; got {item!r}")
        result[key.strip()] = value.strip()
    return result


def channel(name: str, uri: str, input_mode: str | None = None) -> dict[str, Any]:
    """One input channel over an S3 prefix (``file://`` in local mode)."""
    entry: dict[str, Any] = {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }
    if input_mode:
        entry["InputMode"] = input_mode
    return entry


def algorithm_specification(image_uri: str, input_mode: str) -> dict[str, Any]:
    """Image, input mode and the metric regexes of :mod:`dogbreed.metrics`."""
    if input_mode not in INPUT_MODES:
        raise LaunchError(f"input mode must be one of {', '.join(INPUT_MODES)}; got {input_mode!r}")
    if not image_uri or any(c.isspace() for c in image_uri):
        raise LaunchError(f"bad training image URI {image_uri!r}")
    return {
        "TrainingImage": image_uri,
        "TrainingInputMode": input_mode,
        "MetricDefinitions": metrics.metric_definitions(),
    }


def training_job_request(spec: TrainingJobSpec, region: str, local: bool = False) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request for ``spec`` (``local`` allows ``file://`` URIs)."""
    check_name(spec.name)
    if not spec.channels:
        raise LaunchError("a training job needs at least one data channel (e.g. --train s3://...)")
    if spec.instance_count < 1:
        raise LaunchError(f"instance count must be >= 1; got {spec.instance_count}")
    request: dict[str, Any] = {
        "TrainingJobName": spec.name,
        "AlgorithmSpecification": algorithm_specification(spec.image_uri, spec.input_mode),
        "RoleArn": spec.role_arn,
        "HyperParameters": dict(spec.hyperparameters),
        "InputDataConfig": [
            channel(name, check_s3_prefix(uri, f"channel {name!r}", allow_file=local))
            for name, uri in spec.channels.items()
        ],
        "OutputDataConfig": {
            "S3OutputPath": check_s3_uri(spec.output_s3, "the output path", allow_file=local)
        },
        "ResourceConfig": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_s},
    }
    if spec.environment:
        request["Environment"] = dict(spec.environment)
    if spec.spot:
        max_wait = spec.max_wait_s or 2 * spec.max_runtime_s
        if max_wait < spec.max_runtime_s:
            raise LaunchError(
                f"spot max wait ({max_wait} s) must be >= max runtime ({spec.max_runtime_s} s)"
            )
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_wait
    checkpoint = spec.checkpoint_s3
    if spec.spot and not checkpoint:
        checkpoint = f"{spec.output_s3.rstrip('/')}/{spec.name}/checkpoints"
    if checkpoint:
        request["CheckpointConfig"] = {
            "S3Uri": check_s3_prefix(checkpoint, "the checkpoint URI"),
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        }
    if spec.debugger is not None:
        if local:
            raise LaunchError(
                "Debugger rules and the profiler run on AWS only; drop them in local mode"
            )
        request.update(debugger_request(spec.debugger, region))
    return request


def start_training_job(
    aws: Aws,
    spec: TrainingJobSpec,
    announce: Callable[[str], None] | None = None,
    preflight: bool = True,
) -> dict[str, Any]:
    """Check everything, then send ``CreateTrainingJob``; returns the request that was sent.

    The checks include the data layout (:func:`~dogbreed.launch.data.layout.check_layout`) and, unless
    ``preflight=False``, the role, what it may do with the buckets and image, and the instance quota
    (:func:`~dogbreed.launch.training.preflight.require_ready`). ``announce`` hears what was found
    (warnings included) and a last line just before the job starts. In local mode
    this call runs the whole job in docker and returns when it ends.
    """
    request = training_job_request(spec, aws.region, local=aws.local)
    layout = check_layout(aws, spec.channels)
    warned = require_ready(aws, spec) if preflight else []
    if announce:
        announce(layout.summary())
        for check in warned:
            announce(check.lines())
        announce(f"starting training job {spec.name}" + (" in local mode" if aws.local else ""))
    aws.sagemaker.create_training_job(**request)
    return request


def wait_timeout_s(stopping_condition: Mapping[str, int]) -> int:
    """How long to wait for a job with this ``StoppingCondition``: its longest life + slack."""
    longest = stopping_condition.get(
        "MaxWaitTimeInSeconds", stopping_condition["MaxRuntimeInSeconds"]
    )
    return longest + WAIT_SLACK_S


def wait_for_training_job(
    aws: Aws,
    name: str,
    timeout_s: float,
    poll_s: float = 30.0,
    on_status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Poll ``DescribeTrainingJob`` until the job ends; raise with its FailureReason if it failed.

    ``on_status`` hears every new secondary status (Starting, Downloading, Training, ...).
    """
    last = None

    def probe() -> dict[str, Any] | None:
        nonlocal last
        job = aws.sagemaker.describe_training_job(TrainingJobName=name)
        status = job["TrainingJobStatus"]
        secondary = job.get("SecondaryStatus", status)
        if on_status and secondary != last:
            on_status(f"{name}: {secondary}")
            last = secondary
        raise_if_failed(job, status, f"training job {name}")
        return job if status == "Completed" else None

    return poll(probe, f"training job {name} to end", timeout_s, poll_s)


def model_artifact_of(aws: Aws, job_name: str) -> str:
    """The ``model.tar.gz`` URI a completed training job produced."""
    job = aws.sagemaker.describe_training_job(TrainingJobName=job_name)
    uri = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if job.get("TrainingJobStatus") != "Completed" or not uri:
        raise LaunchError(
            f"training job {job_name} has no model yet (status {job.get('TrainingJobStatus')})"
        )
    return uri
