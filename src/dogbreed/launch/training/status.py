"""What a training job or a tuning job is doing and what it has cost: ``dogbreed status``.

SageMaker bills a training job's instances for ``BillableTimeInSeconds`` each (less than the
training time with managed spot), known once the job ends; a tuning job bills its trials, so its
figure is the sum over ``ListTrainingJobsForHyperParameterTuningJob`` and one
``DescribeTrainingJob`` per trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws

#: Error codes SageMaker answers a describe of a name that does not exist with.
NOT_FOUND_CODES = ("ValidationException", "ResourceNotFound")
#: A tuning job's name is at most 32 characters: a longer name is not worth asking about.
TUNING_NAME_MAX = 32


def is_not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in NOT_FOUND_CODES


def describe_training_job(aws: Aws, name: str) -> dict[str, Any] | None:
    """``DescribeTrainingJob``, or None when there is no such job."""
    try:
        return aws.sagemaker.describe_training_job(TrainingJobName=name)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise


def describe_tuning_job(aws: Aws, name: str) -> dict[str, Any] | None:
    """``DescribeHyperParameterTuningJob``, or None when there is no such tuning job."""
    if len(name) > TUNING_NAME_MAX:
        return None
    try:
        return aws.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise


def trials_of(aws: Aws, tuning_job: str) -> list[dict[str, Any]]:
    """Every training job of a tuning job (summaries), oldest first."""
    pages = aws.sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    summaries = [
        summary
        for page in pages.paginate(
            HyperParameterTuningJobName=tuning_job, SortBy="CreationTime", SortOrder="Ascending"
        )
        for summary in page["TrainingJobSummaries"]
    ]
    return sorted(summaries, key=lambda summary: summary["CreationTime"])


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value else "-"


def billed_instance_seconds(job: Mapping[str, Any]) -> int | None:
    """What a job bills: its billable seconds times its instances (None until it ends)."""
    billable = job.get("BillableTimeInSeconds")
    if billable is None:
        return None
    return billable * job["ResourceConfig"]["InstanceCount"]


def training_status_lines(job: Mapping[str, Any]) -> list[str]:
    """Status, secondary status, times, instances, billed seconds and failure of one job."""
    resources = job["ResourceConfig"]
    spot = job.get("EnableManagedSpotTraining", False)
    secondary = job.get("SecondaryStatus", "")
    transitions = job.get("SecondaryStatusTransitions") or [{}]
    message = transitions[-1].get("StatusMessage")
    lines = [
        f"training job {job['TrainingJobName']}: {job['TrainingJobStatus']}"
        + (f" ({secondary}{': ' + message if message else ''})" if secondary else ""),
        f"  instances: {resources['InstanceCount']} x {resources['InstanceType']}"
        + (" (managed spot)" if spot else ""),
        f"  created {when(job.get('CreationTime'))}; training started "
        f"{when(job.get('TrainingStartTime'))}, ended {when(job.get('TrainingEndTime'))}",
    ]
    billed = billed_instance_seconds(job)
    if billed is None:
        lines.append("  billed: not known until the job ends")
    else:
        line = (
            f"  billed: {job['BillableTimeInSeconds']} s x {resources['InstanceCount']} "
            f"instance(s) = {billed} instance-seconds"
        )
        trained = job.get("TrainingTimeInSeconds")
        if spot and trained:
            saved = 1 - job["BillableTimeInSeconds"] / trained
            line += f" (trained {trained} s; managed spot saved {saved:.0%})"
        lines.append(line)
    if job.get("FailureReason"):
        lines.append(f"  failure: {job['FailureReason']}")
    return lines


def _counters(counters: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counters.items() if count) or "none"


def tuning_status_lines(aws: Aws, tuning: Mapping[str, Any]) -> list[str]:
    """The tuning job, its trials (status, objective, billed seconds) and their billed total."""
    name = tuning["HyperParameterTuningJobName"]
    config = tuning["HyperParameterTuningJobConfig"]
    limits = config["ResourceLimits"]
    jobs = limits.get("MaxNumberOfTrainingJobs")
    lines = [
        f"tuning job {name}: {tuning['HyperParameterTuningJobStatus']} ({config['Strategy']}, "
        + (f"{jobs} jobs, " if jobs else "")
        + f"{limits['MaxParallelTrainingJobs']} at a time)",
        f"  created {when(tuning.get('CreationTime'))}, ended "
        f"{when(tuning.get('HyperParameterTuningEndTime'))}",
        f"  trials: {_counters(tuning.get('TrainingJobStatusCounters', {}))}; objective: "
        f"{_counters(tuning.get('ObjectiveStatusCounters', {}))}",
    ]
    best = tuning.get("BestTrainingJob")
    if best:
        metric = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        lines.append(
            f"  best: {best['TrainingJobName']} "
            f"{metric.get('MetricName', 'objective')}={metric.get('Value', float('nan')):.4f}"
        )
    total, unbilled = 0, 0
    for summary in trials_of(aws, name):
        job = aws.sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
        billed = billed_instance_seconds(job)
        value = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
        lines.append(
            f"    {summary['TrainingJobName']}  {summary['TrainingJobStatus']}"
            + (f"  objective {value:.4f}" if value is not None else "")
            + (f"  billed {billed} instance-s" if billed is not None else "  not billed yet")
        )
        if billed is None:
            unbilled += 1
        else:
            total += billed
    lines.append(
        f"  billed: {total} instance-seconds over its trials"
        + (f" ({unbilled} still running, not counted)" if unbilled else "")
    )
    if tuning.get("FailureReason"):
        lines.append(f"  failure: {tuning['FailureReason']}")
    return lines


def status_lines(aws: Aws, name: str) -> list[str]:
    """``dogbreed status NAME``: a training job's lines, else a tuning job's."""
    job = describe_training_job(aws, name)
    if job is not None:
        return training_status_lines(job)
    tuning = describe_tuning_job(aws, name)
    if tuning is not None:
        return tuning_status_lines(aws, tuning)
    raise LaunchError(
        f"no training job or tuning job named {name!r} in {aws.region} "
        "(check the name, and --region / --profile)"
    )
