"""Hyperparameter tuning jobs: the request (ranges from :mod:`.ranges`, strategy checks from
:mod:`.strategies`, the objective from :mod:`dogbreed.metrics`), the wait and the best job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dogbreed import metrics
from dogbreed.launch.data.layout import check_layout
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll
from dogbreed.launch.session import Aws, check_name
from dogbreed.launch.training import strategies
from dogbreed.launch.training.jobs import TrainingJobSpec, training_job_request, wait_timeout_s
from dogbreed.launch.training.preflight import require_ready
from dogbreed.launch.training.ranges import Range, parameter_ranges, parse_ranges

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
#: Keys SageMaker adds to a tuned job's hyperparameters; not ours to send again.
RESERVED_PREFIXES = ("_", "sagemaker_")


@dataclass(frozen=True)
class TuningSpec:
    name: str
    training: TrainingJobSpec  # its hyperparameters are the static ones
    ranges: Sequence[Range] = field(default_factory=lambda: parse_ranges([]))
    max_jobs: int | None = None  # None: 12, or every combination for Grid
    max_parallel_jobs: int = 2
    strategy: str = "Bayesian"
    early_stopping: bool = True


def tuning_job_request(spec: TuningSpec, region: str) -> dict[str, Any]:
    """The ``CreateHyperParameterTuningJob`` request (no Debugger: a tuning job cannot carry it)."""
    check_name(spec.name, max_length=32)
    if spec.strategy not in STRATEGIES:
        raise LaunchError(f"strategy must be one of {', '.join(STRATEGIES)}; got {spec.strategy!r}")
    if not spec.ranges:
        raise LaunchError("a tuning job needs at least one range")
    clash = {r.name for r in spec.ranges} & set(spec.training.hyperparameters)
    if clash:
        raise LaunchError(f"hyperparameter(s) both fixed and tuned: {', '.join(sorted(clash))}")
    plan = strategies.plan(spec.strategy, spec.ranges, spec.max_jobs, spec.early_stopping)
    if not plan.ranges:
        raise LaunchError(f"{spec.strategy} needs at least one range to search")
    if not 1 <= spec.max_parallel_jobs <= plan.max_jobs:
        raise LaunchError(
            f"need 1 <= max parallel jobs ({spec.max_parallel_jobs}) <= max jobs ({plan.max_jobs})"
        )
    if metrics.OBJECTIVE_METRIC not in {d["Name"] for d in metrics.metric_definitions()}:
        raise LaunchError(f"objective {metrics.OBJECTIVE_METRIC} has no metric definition")
    job = training_job_request(spec.training, region)
    definition = {
        "StaticHyperParameters": {**job["HyperParameters"], **plan.static},
        "AlgorithmSpecification": job["AlgorithmSpecification"],
        "RoleArn": job["RoleArn"],
        "InputDataConfig": job["InputDataConfig"],
        "OutputDataConfig": job["OutputDataConfig"],
        "ResourceConfig": job["ResourceConfig"],
        "StoppingCondition": job["StoppingCondition"],
    }
    for key in ("EnableManagedSpotTraining", "CheckpointConfig", "Environment"):
        if key in job:
            definition[key] = job[key]
    return {
        "HyperParameterTuningJobName": spec.name,
        "HyperParameterTuningJobConfig": {
            "Strategy": spec.strategy,
            "HyperParameterTuningJobObjective": {
                "Type": metrics.OBJECTIVE_TYPE,
                "MetricName": metrics.OBJECTIVE_METRIC,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": plan.max_jobs,
                "MaxParallelTrainingJobs": spec.max_parallel_jobs,
            },
            "ParameterRanges": parameter_ranges(plan.ranges),
            **plan.config,
        },
        "TrainingJobDefinition": definition,
    }


def start_tuning_job(
    aws: Aws,
    spec: TuningSpec,
    announce: Callable[[str], None] | None = None,
    preflight: bool = True,
) -> dict[str, Any]:
    """Check everything (the data layout, and unless ``preflight=False`` the role, what it may do
    with the buckets and image, and the instance quota for the parallel trials), then send
    ``CreateHyperParameterTuningJob``.

    ``announce`` hears what was found (warnings included), before the job starts.
    """
    if aws.local:
        raise LaunchError("SageMaker has no local hyperparameter tuning; run tune on AWS")
    request = tuning_job_request(spec, aws.region)
    layout = check_layout(aws, spec.training.channels)
    warned = require_ready(aws, spec.training, spec.max_parallel_jobs) if preflight else []
    if announce:
        announce(layout.summary())
        for check in warned:
            announce(check.lines())
    aws.sagemaker.create_hyper_parameter_tuning_job(**request)
    return request


@dataclass(frozen=True)
class BestJob:
    tuning_job: str
    status: str
    training_job: str
    objective: str
    value: float
    hyperparameters: dict[str, str]

    def summary(self) -> str:
        params = " ".join(f"{k}={v}" for k, v in sorted(self.hyperparameters.items()))
        return (
            f"tuning job {self.tuning_job} ({self.status}): best training job {self.training_job}, "
            f"{self.objective}={self.value:.4f}; hyperparameters: {params}"
        )


def best_job(aws: Aws, tuning_job: str) -> BestJob:
    """The best training job so far and its tuned hyperparameters."""
    described = aws.sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_job
    )
    best = described.get("BestTrainingJob")
    status = described["HyperParameterTuningJobStatus"]
    if not best:
        reason = described.get("FailureReason", "")
        raise LaunchError(
            f"tuning job {tuning_job} ({status}) has no completed training job yet"
            + (f": {reason}" if reason else "")
        )
    metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
    return BestJob(
        tuning_job=tuning_job,
        status=status,
        training_job=best["TrainingJobName"],
        objective=metric.get("MetricName", metrics.OBJECTIVE_METRIC),
        value=float(metric.get("Value", float("nan"))),
        hyperparameters=dict(best.get("TunedHyperParameters", {})),
    )


def tuning_timeout_s(request: Mapping[str, Any]) -> int:
    """How long to wait for a tuning job: its rounds of parallel trials, each as long as a trial."""
    limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
    rounds = -(-limits["MaxNumberOfTrainingJobs"] // limits["MaxParallelTrainingJobs"])
    return rounds * wait_timeout_s(request["TrainingJobDefinition"]["StoppingCondition"])


def wait_for_tuning_job(
    aws: Aws, tuning_job: str, timeout_s: float, poll_s: float = 60.0
) -> BestJob:
    """Poll until the tuning job ends (Completed, Stopped or Failed); then its best job so far."""

    def probe() -> str | None:
        described = aws.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=tuning_job
        )
        status = described["HyperParameterTuningJobStatus"]
        return status if status in ("Completed", "Stopped", "Failed") else None

    poll(probe, f"tuning job {tuning_job} to end", timeout_s, poll_s)
    return best_job(aws, tuning_job)


def hyperparameters_of(aws: Aws, training_job: str) -> dict[str, str]:
    """A finished job's hyperparameters (static and tuned), without SageMaker's own keys."""
    job = aws.sagemaker.describe_training_job(TrainingJobName=training_job)
    return {
        k: v
        for k, v in job.get("HyperParameters", {}).items()
        if not k.startswith(RESERVED_PREFIXES)
    }


def best_hyperparameters(aws: Aws, tuning_job: str) -> dict[str, str]:
    """What ``dogbreed train --from-tuning-job`` starts from: the best job's full set."""
    return hyperparameters_of(aws, best_job(aws, tuning_job).training_job)


def merge(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """``overrides`` on top of ``base``, names in the trainer's spelling (``batch-size``)."""
    from dogbreed.hyperparams import cli_name

    merged = {cli_name(k.replace("-", "_")): v for k, v in base.items()}
    merged.update({cli_name(k.replace("-", "_")): v for k, v in overrides.items()})
    return merged
