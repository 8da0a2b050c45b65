"""`dogbreed train`: the exact CreateTrainingJob request with Debugger, Profiler, spot and DDP."""

from __future__ import annotations

from datetime import datetime

import pytest

from dogbreed import metrics
from dogbreed.launch.cli.main import main
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.training.debugger import DebuggerSettings, debugger_request

from .conftest import (
    REGION,
    ROLE,
    RULE_IMAGE,
    TRAIN_IMAGE,
    stub_dog_images,
    stub_preflight,
    training_job_description,
)

TRAIN_ARGS = [
    "train",
    "--image",
    TRAIN_IMAGE,
    "--role",
    ROLE,
    "--name",
    "dogbreed-train-1",
    "--data",
    "s3://bucket/dogImages",
    "--output",
    "s3://bucket/runs",
    "--hp",
    "lr=0.02",
    "--hp",
    "batch-size=64",
    "--hp",
    "epochs=4",
]


@pytest.fixture
def dog_images_alone(stub) -> None:
    """TRAIN_ARGS' data, s3://bucket/dogImages/, holds train/ valid/ test/ with three breeds."""
    stub_dog_images(stub("s3"))


@pytest.fixture
def dog_images(stub, dog_images_alone) -> None:
    """The data, and a role, bucket and image that pass the preflight."""
    stub_preflight(stub)


def rule(name: str) -> dict:
    return {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": RULE_IMAGE,
        "RuleParameters": {"rule_to_invoke": name},
    }


def collection(name: str, interval: int, **extra: str) -> dict:
    return {
        "CollectionName": name,
        "CollectionParameters": {**extra, "save_interval": str(interval)},
    }


def expected_training_request() -> dict:
    return {
        "TrainingJobName": "dogbreed-train-1",
        "AlgorithmSpecification": {
            "TrainingImage": TRAIN_IMAGE,
            "TrainingInputMode": "FastFile",
            "MetricDefinitions": metrics.metric_definitions(),
        },
        "RoleArn": ROLE,
        "HyperParameters": {"lr": "0.02", "batch-size": "64", "epochs": "4"},
        "InputDataConfig": [
            {
                "ChannelName": "training",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://bucket/dogImages/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/runs"},
        "ResourceConfig": {
            "InstanceType": "ml.g5.xlarge",
            "InstanceCount": 2,
            "VolumeSizeInGB": 30,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800},
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {"S3Uri": "s3://bucket/ckpt/run1/", "LocalPath": "/opt/ml/checkpoints"},
        "DebugHookConfig": {
            "S3OutputPath": "s3://bucket/debug",
            "CollectionConfigurations": [
                collection("losses", 5),
                collection("weights", 50),
                collection("gradients", 25),
                collection("relu_input", 500, include_regex=".*relu_input"),
            ],
        },
        "DebugRuleConfigurations": [
            rule("VanishingGradient"),
            rule("Overfit"),
            rule("Overtraining"),
            rule("PoorWeightInitialization"),
            rule("LossNotDecreasing"),
        ],
        "ProfilerConfig": {
            "S3OutputPath": "s3://bucket/debug",
            "ProfilingIntervalInMilliseconds": 500,
        },
        "ProfilerRuleConfigurations": [rule("ProfilerReport")],
    }


def test_train_sends_hook_rules_profiler_spot_checkpoint_and_instance_count(
    stub, dog_images, capsys
) -> None:
    stub("sagemaker").add_response(
        "create_training_job", {"TrainingJobArn": "arn:t"}, expected_training_request()
    )
    args = TRAIN_ARGS + [
        "--instance-type",
        "ml.g5.xlarge",
        "--instance-count",
        "2",
        "--input-mode",
        "FastFile",
        "--spot",
        "--max-runtime",
        "7200",
        "--max-wait",
        "10800",
        "--checkpoint-s3",
        "s3://bucket/ckpt/run1",
        "--debug-output",
        "s3://bucket/debug",
        "--losses-interval",
        "5",
        "--weights-interval",
        "50",
        "--gradients-interval",
        "25",
    ]
    assert main(args) == 0
    assert "starting training job dogbreed-train-1" in capsys.readouterr().out


def plain_request() -> dict:
    """The request without spot, DDP, FastFile or tensors; the profiler writes to --output."""
    expected = expected_training_request()
    for key in (
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "EnableManagedSpotTraining",
        "CheckpointConfig",
    ):
        del expected[key]
    expected["ProfilerConfig"]["S3OutputPath"] = "s3://bucket/runs"
    expected["AlgorithmSpecification"]["TrainingInputMode"] = "File"
    expected["ResourceConfig"] = {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    expected["StoppingCondition"] = {"MaxRuntimeInSeconds": 14400}
    return expected


def test_no_debugger_keeps_the_profiler(stub, dog_images) -> None:
    stub("sagemaker").add_response(
        "create_training_job", {"TrainingJobArn": "arn:t"}, plain_request()
    )
    assert main(TRAIN_ARGS + ["--no-debugger"]) == 0


def test_no_debugger_and_no_profiler(stub, dog_images) -> None:
    expected = plain_request()
    del expected["ProfilerRuleConfigurations"]
    expected["ProfilerConfig"] = {"DisableProfiler": True}
    stub("sagemaker").add_response("create_training_job", {"TrainingJobArn": "arn:t"}, expected)
    assert main(TRAIN_ARGS + ["--no-debugger", "--no-profiler"]) == 0


def test_chosen_rules_only_and_the_hook_still_saves_the_three_collections() -> None:
    settings = DebuggerSettings(s3_output="s3://b/d", rules=["Overfit"], profiler=False)
    request = debugger_request(settings, "eu-west-1")
    assert request["DebugRuleConfigurations"] == [
        {
            "RuleConfigurationName": "Overfit",
            "RuleEvaluatorImage": "929884845733.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-debugger-rules:latest",
            "RuleParameters": {"rule_to_invoke": "Overfit"},
        }
    ]
    names = [c["CollectionName"] for c in request["DebugHookConfig"]["CollectionConfigurations"]]
    assert names == ["losses", "weights", "gradients"]
    assert "ProfilerRuleConfigurations" not in request


def test_profiler_rules_run_beside_the_profiler_report(stub, dog_images, capsys) -> None:
    """LowGPUUtilization is a profiler rule: it joins ProfilerReport, with its own parameters."""
    expected = plain_request()
    expected["ProfilerRuleConfigurations"].append(
        {
            "RuleConfigurationName": "LowGPUUtilization",
            "RuleEvaluatorImage": RULE_IMAGE,
            "RuleParameters": {
                "threshold_p95": "70",
                "threshold_p5": "10",
                "window": "500",
                "patience": "1000",
                "scan_interval_us": "60000000",
                "rule_to_invoke": "LowGPUUtilization",
            },
        }
    )
    stub("sagemaker").add_response("create_training_job", {"TrainingJobArn": "arn:t"}, expected)
    assert main(TRAIN_ARGS + ["--no-debugger", "--rules", "LowGPUUtilization"]) == 0
    assert "starting training job dogbreed-train-1" in capsys.readouterr().out


REGIONS_WITHOUT_RULE_IMAGES = ["eu-central-2", "il-central-1", "ap-southeast-3", "ca-west-1"]


@pytest.mark.parametrize("aws", REGIONS_WITHOUT_RULE_IMAGES, indirect=True)
def test_a_region_without_rule_images_trains_without_debugger_and_says_so(
    stub, dog_images_alone, capsys
) -> None:
    """(TRAIN_ARGS' bucket and image are in us-east-1: the preflight would refuse them.)"""
    expected = plain_request()
    del expected["ProfilerRuleConfigurations"], expected["ProfilerConfig"]
    stub("sagemaker").add_response("create_training_job", {"TrainingJobArn": "arn:t"}, expected)
    assert main(TRAIN_ARGS + ["--skip-preflight"]) == 0
    err = capsys.readouterr().err
    assert "SageMaker Debugger and the profiler are not available in" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("aws", ["eu-central-2", "us-gov-east-1"], indirect=True)
def test_no_debugger_no_profiler_needs_no_rule_image(stub, dog_images_alone, capsys) -> None:
    expected = plain_request()
    del expected["ProfilerRuleConfigurations"], expected["ProfilerConfig"]
    stub("sagemaker").add_response("create_training_job", {"TrainingJobArn": "arn:t"}, expected)
    assert main(TRAIN_ARGS + ["--no-debugger", "--no-profiler", "--skip-preflight"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("region", ["eu-central-2", "me-central-1"])
def test_the_library_refuses_rules_where_there_is_no_rule_image(region) -> None:
    with pytest.raises(LaunchError, match=f"not available in {region}"):
        debugger_request(DebuggerSettings(s3_output="s3://b/d", profiler=False), region)
    hook_only = DebuggerSettings(s3_output="s3://b/d", rules=(), profiler=False)
    assert "DebugHookConfig" in debugger_request(hook_only, region)  # no image looked up


def test_best_hyperparameters_of_a_tuning_job_seed_the_training_job(
    stub, dog_images, capsys
) -> None:
    sm = stub("sagemaker")
    sm.add_response(
        "describe_hyper_parameter_tuning_job",
        {
            "HyperParameterTuningJobName": "hpo-1",
            "HyperParameterTuningJobArn": "arn:x",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Bayesian",
                "ResourceLimits": {"MaxParallelTrainingJobs": 2},
            },
            "HyperParameterTuningJobStatus": "Completed",
            "CreationTime": datetime(2026, 1, 1),
            "TrainingJobStatusCounters": {},
            "ObjectiveStatusCounters": {},
            "BestTrainingJob": {
                "TrainingJobName": "hpo-1-003-xyz",
                "TrainingJobArn": "arn:y",
                "CreationTime": datetime(2026, 1, 1),
                "TrainingJobStatus": "Completed",
                "TunedHyperParameters": {"lr": "0.031", "batch-size": "128", "epochs": "5"},
            },
        },
        {"HyperParameterTuningJobName": "hpo-1"},
    )
    sm.add_response(
        "describe_training_job",
        training_job_description(
            "hpo-1-003-xyz",
            HyperParameters={
                "lr": "0.031",
                "batch-size": "128",
                "epochs": "5",
                "optimizer": "adamw",
                "_tuning_objective_metric": "valid:accuracy",
                "sagemaker_estimator": "x",
            },
        ),
        {"TrainingJobName": "hpo-1-003-xyz"},
    )
    expected = plain_request()
    expected["HyperParameters"] = {
        "lr": "0.031",
        "batch-size": "128",
        "epochs": "6",
        "optimizer": "adamw",
    }
    sm.add_response("create_training_job", {"TrainingJobArn": "arn:t"}, expected)
    args = TRAIN_ARGS[:-6] + ["--from-tuning-job", "hpo-1", "--hp", "epochs=6", "--no-debugger"]
    assert main(args) == 0


@pytest.fixture
def no_requests(stub):
    stub("sagemaker")  # no responses queued: a request would fail the test
    stub("s3")


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--hp", "lr=fast"], "lr must be a number"),
        (["--hp", "epochs=0"], "epochs must be an integer >= 1"),
        (["--hp", "dropout=0.5"], "unknown hyperparameter"),
        (["--hp", "lr"], "--hp must look like NAME=VALUE"),
        (["--rules", "Overfit,NoSuchRule"], "unknown built-in rule 'NoSuchRule'"),
        (["--rules", "LowGPUUtilization", "--no-profiler"], "LowGPUUtilization need the profiler"),
        (["--instance-count", "0"], "instance count must be >= 1"),
        (["--spot", "--max-wait", "60"], "spot max wait (60 s) must be >= max runtime"),
        (["--debug-output", "bucket/debug"], "the Debugger output path must be s3://"),
    ],
)
def test_bad_options_fail_before_any_request(no_requests, capsys, extra, complaint) -> None:
    assert main(TRAIN_ARGS + extra) == 1
    printed = capsys.readouterr()
    assert complaint in printed.err
    assert "starting training job" not in printed.out


def test_output_must_be_s3_outside_local_mode(no_requests, capsys) -> None:
    args = [a if a != "s3://bucket/runs" else "/tmp/runs" for a in TRAIN_ARGS]
    assert main(args) == 1
    assert "the output path must be s3://bucket/prefix; got '/tmp/runs'" in capsys.readouterr().err


def test_a_role_is_required(no_requests, capsys) -> None:
    args = [a for a in TRAIN_ARGS if a not in ("--role", ROLE)]
    assert main(args) == 1
    assert "no SageMaker execution role" in capsys.readouterr().err


def test_debugger_is_refused_in_local_mode() -> None:
    from dogbreed.launch.training.jobs import TrainingJobSpec, training_job_request

    spec = TrainingJobSpec(
        name="x",
        image_uri="img",
        role_arn=ROLE,
        output_s3="file:///tmp/o",
        channels={"training": "file:///tmp/d"},
        debugger=DebuggerSettings(s3_output="s3://b/d"),
    )
    with pytest.raises(LaunchError, match="run on AWS only"):
        training_job_request(spec, REGION, local=True)


def test_train_wait_follows_the_job_and_prints_the_model(
    stub, dog_images, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    sm = stub("sagemaker")
    sm.add_response(
        "create_training_job",
        {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x"},
    )
    described = training_job_description()
    name = {"TrainingJobName": "dogbreed-train-1"}
    for status, secondary in [
        ("InProgress", "Starting"),
        ("InProgress", "Training"),
        ("InProgress", "Training"),
        ("Completed", "Completed"),
        ("Completed", "Completed"),
    ]:
        sm.add_response(
            "describe_training_job",
            {**described, "TrainingJobStatus": status, "SecondaryStatus": secondary},
            name,
        )
    assert main(TRAIN_ARGS + ["--no-debugger", "--wait"]) == 0
    out = capsys.readouterr().out
    assert out.count("dogbreed-train-1: Training") == 1 and "dogbreed-train-1: Starting" in out
    assert "model: s3://bucket/runs/dogbreed-train-1/output/model.tar.gz" in out


def test_a_failed_training_job_reports_its_failure_reason(
    stub, dog_images, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    sm = stub("sagemaker")
    sm.add_response(
        "create_training_job",
        {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x"},
    )
    sm.add_response(
        "describe_training_job",
        training_job_description(
            TrainingJobStatus="Failed",
            SecondaryStatus="Failed",
            FailureReason="AlgorithmError: data: no images in channel 'training'",
            ModelArtifacts={"S3ModelArtifacts": ""},
        ),
    )
    assert main(TRAIN_ARGS + ["--no-debugger", "--wait"]) == 1
    assert (
        "training job dogbreed-train-1 failed: AlgorithmError: data: no images"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("s3://bucket/dogImages", "s3://bucket/dogImages/"),
        ("s3://bucket/dogImages/", "s3://bucket/dogImages/"),
        ("s3://bucket", "s3://bucket/"),
        ("file:///data/dogImages", "file:///data/dogImages"),
    ],
)
def test_s3_prefixes_end_in_a_slash_so_a_zip_beside_the_folder_is_not_read(given, sent) -> None:
    from dogbreed.launch.session import check_s3_prefix

    assert check_s3_prefix(given, "the data", allow_file=True) == sent


def test_the_checkpoint_local_path_is_where_the_trainer_looks() -> None:
    from dogbreed.launch.training.jobs import CHECKPOINT_LOCAL_PATH
    from dogbreed.train.job_paths import JobPaths

    assert str(JobPaths.from_env({}).checkpoint_dir) == CHECKPOINT_LOCAL_PATH
