"""Watching a run: `dogbreed logs` (CloudWatch streams interleaved, followed until the job ends),
`dogbreed status` (billed seconds of a job and of a tuning job's trials) and `report --wait`.

Every request goes through a Stubber on the real clients (validated against botocore's model);
the waits run on a fake clock or a no-op sleep, never in real time.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from botocore.stub import Stubber

from dogbreed.launch.cli.main import build_parser, main
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.training.report import wait_for_profiler_report
from dogbreed.launch.training.watch import (
    POLL_S,
    TRAINING_LOG_GROUP,
    LogReader,
    log_source,
    show_logs,
)

from .conftest import stub_dog_images, training_job_description
from .test_poll import FakeClock
from .test_train_job import TRAIN_ARGS, plain_request
from .test_tune import TUNE_ARGS, describe_tuning, dogs, expected_tuning_request  # noqa: F401

JOB = "dogbreed-train-1"
TUNING = "dogbreed-hpo-1"
ALGO_1, ALGO_2 = f"{JOB}/algo-1-1700000000", f"{JOB}/algo-2-1700000000"


def not_found(stubber: Stubber, operation: str, code: str, params: dict) -> None:
    stubber.add_client_error(
        operation, service_error_code=code, service_message="not found", expected_params=params
    )


def no_job_named(sm: Stubber, name: str) -> None:
    """Neither a training job nor a tuning job has this name (SageMaker's two error codes)."""
    not_found(sm, "describe_training_job", "ValidationException", {"TrainingJobName": name})
    not_found(
        sm,
        "describe_hyper_parameter_tuning_job",
        "ResourceNotFound",
        {"HyperParameterTuningJobName": name},
    )


def describe_job(sm: Stubber, name: str = JOB, **fields: object) -> None:
    sm.add_response(
        "describe_training_job",
        training_job_description(name, **fields),
        {"TrainingJobName": name},
    )


def streams(logs: Stubber, *names: str, group: str = TRAINING_LOG_GROUP, prefix: str = "") -> None:
    params = {"logGroupName": group, **({"logStreamNamePrefix": prefix} if prefix else {})}
    logs.add_response(
        "describe_log_streams", {"logStreams": [{"logStreamName": n} for n in names]}, params
    )


def events(
    logs: Stubber,
    stream: str,
    lines: list[tuple[int, str]],
    token: str | None,
    next_token: str,
    group: str = TRAINING_LOG_GROUP,
) -> None:
    """One GetLogEvents page of ``stream``, read on from ``token``."""
    params = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    if token:
        params["nextToken"] = token
    page = [{"timestamp": t, "message": m, "ingestionTime": t} for t, m in lines]
    logs.add_response(
        "get_log_events",
        {"events": page, "nextForwardToken": next_token, "nextBackwardToken": "b"},
        params,
    )


# --- logs -----------------------------------------------------------------------------------


def test_logs_interleave_the_streams_of_a_job_by_timestamp(stub, capsys) -> None:
    sm, logs = stub("sagemaker"), stub("logs")
    describe_job(sm, TrainingJobStatus="InProgress")
    streams(logs, ALGO_2, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(1000, "algo-1 starts"), (3000, "algo-1 epoch 1")], None, "f/1a")
    events(logs, ALGO_1, [], "f/1a", "f/1a")  # the same token back: the end of the stream
    events(logs, ALGO_2, [(2000, "algo-2 starts"), (4000, "algo-2 epoch 1")], None, "f/2a")
    events(logs, ALGO_2, [], "f/2a", "f/2a")
    assert main(["logs", JOB]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[algo-1] algo-1 starts",
        "[algo-2] algo-2 starts",
        "[algo-1] algo-1 epoch 1",
        "[algo-2] algo-2 epoch 1",
    ]


def test_logs_read_past_empty_pages_until_the_token_sent_comes_back(stub, capsys) -> None:
    """GetLogEvents may answer an empty page in the middle of a stream (a time gap): only the
    token sent coming back ends it (issue 20, item 2)."""
    sm, logs = stub("sagemaker"), stub("logs")
    describe_job(sm)
    streams(logs, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(1000, "epoch 1")], None, "f/1")
    events(logs, ALGO_1, [], "f/1", "f/2")  # empty, but a new token: not the end
    events(logs, ALGO_1, [], "f/2", "f/3")
    events(logs, ALGO_1, [(9000, "epoch 2, an hour later")], "f/3", "f/4")
    events(logs, ALGO_1, [], "f/4", "f/4")  # the token sent comes back: the end
    assert main(["logs", JOB]) == 0
    assert capsys.readouterr().out.splitlines() == ["epoch 1", "epoch 2, an hour later"]


def test_one_read_of_a_stream_stops_after_its_page_and_time_bounds(stub, aws) -> None:
    """A stream that keeps handing out new tokens is read at most ``max_pages`` pages or
    ``max_s`` seconds a read; the next read goes on from the last token."""
    logs = stub("logs")
    clock = iter([0.0, 1.0, 2.0, 3.0, 100.0, 110.0, 130.0]).__next__
    reader = LogReader(
        aws.client("logs"), TRAINING_LOG_GROUP, f"{JOB}/", max_pages=3, max_s=25.0, clock=clock
    )
    streams(logs, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(1, "a")], None, "f/1")
    events(logs, ALGO_1, [(2, "b")], "f/1", "f/2")
    events(logs, ALGO_1, [(3, "c")], "f/2", "f/3")  # page 3 of 3: stop here
    assert [message for _, _, message in reader.read()] == ["a", "b", "c"]
    assert reader.unfinished == [ALGO_1] and reader.tokens[ALGO_1] == "f/3"
    # Read 2 starts at 100 s (bound: 125 s); its second page ends at 130 s: it stops there.
    streams(logs, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(4, "late 0")], "f/3", "f/4")
    events(logs, ALGO_1, [(5, "late 1")], "f/4", "f/5")
    assert [message for _, _, message in reader.read()] == ["late 0", "late 1"]
    assert reader.unfinished == [ALGO_1] and reader.tokens[ALGO_1] == "f/5"


def test_follow_reads_on_from_each_streams_token_and_stops_after_the_job_ends(
    stub, aws, capsys
) -> None:
    """Round 1: the job runs, one stream. Round 2: it has completed, a second stream has come.
    Round 3, one interval later: the events CloudWatch ingested late. Then it stops."""
    sm, logs = stub("sagemaker"), stub("logs")
    describe_job(sm)  # log_source: the job exists
    describe_job(sm, TrainingJobStatus="InProgress")
    streams(logs, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(1000, "one")], None, "f/1")
    events(logs, ALGO_1, [], "f/1", "f/1")
    describe_job(sm, TrainingJobStatus="Completed")
    streams(logs, ALGO_1, ALGO_2, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(3000, "three")], "f/1", "f/1b")
    events(logs, ALGO_1, [], "f/1b", "f/1b")
    events(logs, ALGO_2, [(2000, "two")], None, "f/2")
    events(logs, ALGO_2, [], "f/2", "f/2")
    streams(logs, ALGO_1, ALGO_2, prefix=f"{JOB}/")
    events(logs, ALGO_1, [], "f/1b", "f/1b")
    events(logs, ALGO_2, [(4000, "late")], "f/2", "f/2b")
    events(logs, ALGO_2, [], "f/2b", "f/2b")
    clock, printed = FakeClock(), []
    source = log_source(aws, JOB)
    ended = show_logs(aws, source, printed.append, follow=True, clock=clock, sleep=clock.sleep)
    assert ended == "Completed"
    assert printed == ["one", "[algo-2] two", "[algo-1] three", "[algo-2] late"]
    assert clock.sleeps == [POLL_S, POLL_S]


def test_follow_gives_up_at_its_timeout(stub, aws) -> None:
    sm, logs = stub("sagemaker"), stub("logs")
    describe_job(sm, TrainingJobStatus="InProgress")
    for _ in range(4):  # probes at 0, 10, 20 and 25 s
        describe_job(sm, TrainingJobStatus="InProgress")
        streams(logs, prefix=f"{JOB}/")
    clock = FakeClock()
    source = log_source(aws, JOB)
    with pytest.raises(LaunchError, match=f"gave up after 25 s waiting for training job {JOB}"):
        show_logs(aws, source, print, follow=True, timeout_s=25, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [10, 10, 5]


def test_the_follow_command_exits_1_when_the_job_failed(stub, capsys, monkeypatch) -> None:
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    sm, logs = stub("sagemaker"), stub("logs")
    describe_job(sm)
    describe_job(sm, TrainingJobStatus="Failed", FailureReason="AlgorithmError: out of memory")
    streams(logs, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [(1000, "CUDA out of memory")], None, "f/1")
    events(logs, ALGO_1, [], "f/1", "f/1")
    streams(logs, ALGO_1, prefix=f"{JOB}/")
    events(logs, ALGO_1, [], "f/1", "f/1")
    assert main(["logs", JOB, "--follow"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "CUDA out of memory",
        f"training job {JOB}: Failed",
    ]


def trial_summary(name: str, status: str, day: int, value: float | None = None) -> dict:
    summary = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "CreationTime": datetime(2026, 1, day),
        "TrainingJobStatus": status,
        "TunedHyperParameters": {"lr": "0.01"},
    }
    if value is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "MetricName": "valid:accuracy",
            "Value": value,
        }
    return summary


TRIALS = [
    trial_summary("dogbreed-hpo-1-001-aaa", "Completed", 1, 0.61),
    trial_summary("dogbreed-hpo-1-007-abc", "Completed", 2, 0.8125),
    trial_summary("dogbreed-hpo-1-008-xyz", "InProgress", 3),
]


def list_trials(sm: Stubber) -> None:
    """Two pages, to show every page is read."""
    params = {"HyperParameterTuningJobName": TUNING, "SortBy": "CreationTime"}
    params["SortOrder"] = "Ascending"
    sm.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": TRIALS[:2], "NextToken": "page-2"},
        params,
    )
    sm.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": TRIALS[2:]},
        {**params, "NextToken": "page-2"},
    )


def a_tuning_job(sm: Stubber, status: str = "InProgress") -> None:
    not_found(sm, "describe_training_job", "ValidationException", {"TrainingJobName": TUNING})
    sm.add_response(
        "describe_hyper_parameter_tuning_job",
        describe_tuning(status),
        {"HyperParameterTuningJobName": TUNING},
    )


def test_logs_of_a_tuning_job_list_its_trials_and_follow_the_best(stub, capsys) -> None:
    sm, logs = stub("sagemaker"), stub("logs")
    a_tuning_job(sm)
    list_trials(sm)
    best = "dogbreed-hpo-1-007-abc"
    describe_job(sm, best)
    streams(logs, f"{best}/algo-1-1", prefix=f"{best}/")
    events(logs, f"{best}/algo-1-1", [(1, "[metrics] valid:accuracy=0.8125")], None, "f/1")
    events(logs, f"{best}/algo-1-1", [], "f/1", "f/1")
    assert main(["logs", TUNING]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"tuning job {TUNING}: 3 training jobs",
        "  dogbreed-hpo-1-001-aaa  Completed",
        "  dogbreed-hpo-1-007-abc  Completed  (best, following)",
        "  dogbreed-hpo-1-008-xyz  InProgress",
        f"following {best} (the best so far; --trial NAME follows another)",
        "[metrics] valid:accuracy=0.8125",
    ]


def test_a_trial_that_is_not_the_tuning_jobs_is_refused_naming_its_trials(stub, capsys) -> None:
    sm = stub("sagemaker")
    a_tuning_job(sm)
    list_trials(sm)
    assert main(["logs", TUNING, "--trial", "dogbreed-hpo-1-009-nope"]) == 1
    err = capsys.readouterr().err
    assert f"'dogbreed-hpo-1-009-nope' is not a training job of tuning job {TUNING}" in err
    assert "dogbreed-hpo-1-008-xyz" in err


def test_logs_of_an_endpoint_read_its_own_log_group(stub, capsys) -> None:
    sm, logs = stub("sagemaker"), stub("logs")
    name = "dogbreed-prod"
    no_job_named(sm, name)
    sm.add_response(
        "describe_endpoint",
        {
            "EndpointName": name,
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dogbreed-prod",
            "EndpointConfigName": name,
            "EndpointStatus": "InService",
            "CreationTime": datetime(2026, 1, 1),
            "LastModifiedTime": datetime(2026, 1, 1),
        },
        {"EndpointName": name},
    )
    group = f"/aws/sagemaker/Endpoints/{name}"
    streams(logs, "AllTraffic/i-0abc", group=group)
    events(logs, "AllTraffic/i-0abc", [(5, "model loaded")], None, "f/1", group=group)
    events(logs, "AllTraffic/i-0abc", [], "f/1", "f/1", group=group)
    assert main(["logs", name]) == 0
    assert capsys.readouterr().out.splitlines() == ["model loaded"]


def test_logs_of_an_unknown_name_say_what_was_looked_for(stub, capsys) -> None:
    sm, name = stub("sagemaker"), "nothing-here"
    no_job_named(sm, name)
    not_found(sm, "describe_endpoint", "ValidationException", {"EndpointName": name})
    assert main(["logs", name]) == 1
    err = capsys.readouterr().err
    assert "no training job, tuning job or endpoint named 'nothing-here' in us-east-1" in err


def test_train_without_wait_prints_the_command_that_follows_it(stub, capsys) -> None:
    """The line train prints (tune prints the same) is the command line `logs` parses."""
    stub_dog_images(stub("s3"))
    stub("sagemaker").add_response(
        "create_training_job", {"TrainingJobArn": "arn:t"}, plain_request()
    )
    options = ["--no-debugger", "--skip-preflight"]
    assert main([*TRAIN_ARGS, *options, "--region", "us-east-1", "--profile", "dogs"]) == 0
    line = f"dogbreed logs {JOB} --follow --region us-east-1 --profile dogs"
    assert f"follow its logs: {line}" in capsys.readouterr().out.splitlines()
    args = build_parser().parse_args(line.split()[1:])
    assert (args.command, args.name, args.follow, args.region, args.profile) == (
        "logs",
        JOB,
        True,
        "us-east-1",
        "dogs",
    )


@pytest.mark.usefixtures("dogs")  # test_tune's: the data channels and the preflight
def test_tune_without_wait_prints_the_command_that_follows_its_best_trial(stub, capsys) -> None:
    stub("sagemaker").add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": "arn:x"},
        expected_tuning_request(),
    )
    assert main(TUNE_ARGS) == 0
    printed = capsys.readouterr().out.splitlines()
    assert f"follow the best trial's logs: dogbreed logs {TUNING} --follow" in printed


# --- status ---------------------------------------------------------------------------------


def test_status_of_a_spot_job_gives_its_billed_instance_seconds(stub, capsys) -> None:
    describe_job(
        stub("sagemaker"),
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
        EnableManagedSpotTraining=True,
        TrainingStartTime=datetime(2026, 1, 1, 10, 0, 0),
        TrainingEndTime=datetime(2026, 1, 1, 10, 16, 40),
        TrainingTimeInSeconds=1000,
        BillableTimeInSeconds=600,
    )
    assert main(["status", JOB]) == 0
    out = capsys.readouterr().out
    assert f"training job {JOB}: Completed (Completed)" in out
    assert "instances: 2 x ml.g4dn.xlarge (managed spot)" in out
    assert "training started 2026-01-01 10:00:00, ended 2026-01-01 10:16:40" in out
    assert "billed: 600 s x 2 instance(s) = 1200 instance-seconds" in out
    assert "(trained 1000 s; managed spot saved 40%)" in out


def test_status_of_a_failed_job_gives_the_reason_and_its_last_status_message(stub, capsys) -> None:
    describe_job(
        stub("sagemaker"),
        TrainingJobStatus="Failed",
        SecondaryStatus="Failed",
        SecondaryStatusTransitions=[
            {"Status": "Training", "StartTime": datetime(2026, 1, 1)},
            {
                "Status": "Failed",
                "StartTime": datetime(2026, 1, 1),
                "StatusMessage": "Training job failed",
            },
        ],
        FailureReason="AlgorithmError: no test split",
    )
    assert main(["status", JOB]) == 0
    out = capsys.readouterr().out
    assert f"training job {JOB}: Failed (Failed: Training job failed)" in out
    assert "billed: not known until the job ends" in out
    assert "failure: AlgorithmError: no test split" in out


def test_status_of_a_tuning_job_sums_the_billed_seconds_of_its_trials(stub, capsys) -> None:
    sm = stub("sagemaker")
    a_tuning_job(sm)
    list_trials(sm)
    machine = {"InstanceType": "ml.g4dn.xlarge", "VolumeSizeInGB": 30}
    for summary, billed, count in zip(TRIALS, (100, 200, None), (1, 2, 1), strict=True):
        fields = {"ResourceConfig": {**machine, "InstanceCount": count}}
        if billed is not None:
            fields["BillableTimeInSeconds"] = billed
        describe_job(sm, summary["TrainingJobName"], **fields)
    assert main(["status", TUNING]) == 0
    out = capsys.readouterr().out
    assert f"tuning job {TUNING}: InProgress (Bayesian" in out
    assert "best: dogbreed-hpo-1-007-abc valid:accuracy=0.8125" in out
    assert "dogbreed-hpo-1-001-aaa  Completed  objective 0.6100  billed 100 instance-s" in out
    assert "dogbreed-hpo-1-007-abc  Completed  objective 0.8125  billed 400 instance-s" in out
    assert "dogbreed-hpo-1-008-xyz  InProgress  not billed yet" in out
    assert "billed: 500 instance-seconds over its trials (1 still running, not counted)" in out


def test_status_of_an_unknown_name_is_a_clear_error(stub, capsys) -> None:
    sm, name = stub("sagemaker"), "no-such-job"
    no_job_named(sm, name)
    assert main(["status", name]) == 1
    assert "no training job or tuning job named 'no-such-job'" in capsys.readouterr().err


# --- report --wait --------------------------------------------------------------------------


def with_profiler_report(status: str, job_status: str = "Completed") -> dict:
    return {
        "TrainingJobStatus": job_status,
        "ProfilerConfig": {"S3OutputPath": "s3://bucket/runs"},
        "ProfilerRuleEvaluationStatuses": [
            {"RuleConfigurationName": "ProfilerReport-1700000000", "RuleEvaluationStatus": status}
        ],
    }


def test_report_wait_polls_until_the_profiler_report_rule_has_finished(stub, aws) -> None:
    sm = stub("sagemaker")
    describe_job(sm, **with_profiler_report("InProgress", "InProgress"))
    describe_job(sm, **with_profiler_report("InProgress"))
    describe_job(sm, **with_profiler_report("NoIssuesFound"))
    clock = FakeClock()
    job = wait_for_profiler_report(aws, JOB, poll_s=30, clock=clock, sleep=clock.sleep)
    assert job["ProfilerRuleEvaluationStatuses"][0]["RuleEvaluationStatus"] == "NoIssuesFound"
    assert clock.sleeps == [30, 30]


def test_report_wait_gives_up_after_the_jobs_runtime_and_an_hour(stub, aws) -> None:
    sm = stub("sagemaker")
    for _ in range(3):
        describe_job(sm, **with_profiler_report("InProgress"))
    clock = FakeClock()
    with pytest.raises(LaunchError, match="gave up after 7200 s waiting for the ProfilerReport"):
        wait_for_profiler_report(aws, JOB, poll_s=3600, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [3600, 3600]  # MaxRuntimeInSeconds 3600 + 3600 s


def test_report_wait_on_a_job_without_the_profiler_says_there_is_nothing_to_wait_for(
    stub, tmp_path, capsys
) -> None:
    describe_job(stub("sagemaker"))
    assert main(["report", "--job", JOB, "--wait", "--out", str(tmp_path)]) == 1
    assert f"training job {JOB} has no ProfilerReport rule" in capsys.readouterr().err


def test_report_wait_needs_a_job(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path), "--wait", "--out", str(tmp_path / "r")]) == 1
    assert "--wait needs --job NAME" in capsys.readouterr().err
