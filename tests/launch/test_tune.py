"""`dogbreed tune`: the exact CreateHyperParameterTuningJob request, and the best job."""

from __future__ import annotations

import pytest

from dogbreed import metrics
from dogbreed.launch.cli.main import main
from dogbreed.launch.errors import LaunchError
from dogbreed.launch.training.ranges import parse_range

from .conftest import ROLE, TRAIN_IMAGE, stub_preflight, stub_split_channels

TUNE_ARGS = [
    "tune",
    "--image",
    TRAIN_IMAGE,
    "--role",
    ROLE,
    "--name",
    "dogbreed-hpo-1",
    "--train",
    "s3://bucket/dogs/train",
    "--valid",
    "s3://bucket/dogs/valid",
    "--test",
    "s3://bucket/dogs/test",
    "--output",
    "s3://bucket/runs",
    "--hp",
    "optimizer=adamw",
    "--hp",
    "image_size=224",
    "--max-jobs",
    "10",
    "--max-parallel",
    "3",
]


@pytest.fixture
def dogs(stub) -> None:
    """TUNE_ARGS' channels s3://bucket/dogs/{train,valid,test}/ hold the same three breeds; the
    role, bucket and image pass the preflight."""
    stub_split_channels(stub("s3"), "bucket", "dogs/")
    stub_preflight(stub)


def expected_tuning_request(**changes) -> dict:
    request = {
        "HyperParameterTuningJobName": "dogbreed-hpo-1",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize",
                "MetricName": "valid:accuracy",
            },
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 10, "MaxParallelTrainingJobs": 3},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "lr",
                        "MinValue": "0.001",
                        "MaxValue": "0.1",
                        "ScalingType": "Logarithmic",
                    }
                ],
                "IntegerParameterRanges": [
                    {"Name": "epochs", "MinValue": "2", "MaxValue": "5", "ScalingType": "Auto"}
                ],
                "CategoricalParameterRanges": [
                    {"Name": "batch-size", "Values": ["32", "64", "128", "256", "512"]}
                ],
            },
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"optimizer": "adamw", "image-size": "224"},
            "AlgorithmSpecification": {
                "TrainingImage": TRAIN_IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics.metric_definitions(),
            },
            "RoleArn": ROLE,
            "InputDataConfig": [
                {
                    "ChannelName": name,
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://bucket/dogs/{name}/",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
                for name in ("train", "valid", "test")
            ],
            "OutputDataConfig": {"S3OutputPath": "s3://bucket/runs"},
            "ResourceConfig": {
                "InstanceType": "ml.g4dn.xlarge",
                "InstanceCount": 1,
                "VolumeSizeInGB": 30,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
        },
    }
    request.update(changes)
    return request


def test_tune_sends_the_seed_ranges_objective_and_metric_regexes(stub, dogs, capsys) -> None:
    arn = "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/dogbreed-hpo-1"
    stub("sagemaker").add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": arn},
        expected_tuning_request(),
    )
    assert main(TUNE_ARGS) == 0
    assert "started tuning job dogbreed-hpo-1" in capsys.readouterr().out
    regexes = {d["Name"]: d["Regex"] for d in metrics.metric_definitions()}
    assert (
        regexes["valid:accuracy"]
        == r"\[metrics\].* valid_accuracy=([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
    )


def test_ranges_override_defaults_and_spot_reaches_the_definition(stub, dogs) -> None:
    expected = expected_tuning_request()
    config = expected["HyperParameterTuningJobConfig"]
    config["ParameterRanges"]["ContinuousParameterRanges"] = [
        {"Name": "lr", "MinValue": "0.0005", "MaxValue": "0.05", "ScalingType": "Linear"},
        {"Name": "momentum", "MinValue": "0.8", "MaxValue": "0.99", "ScalingType": "Auto"},
    ]
    config["Strategy"] = "Random"
    config["TrainingJobEarlyStoppingType"] = "Off"
    definition = expected["TrainingJobDefinition"]
    definition["StoppingCondition"] = {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    definition["EnableManagedSpotTraining"] = True
    definition["CheckpointConfig"] = {
        "S3Uri": "s3://bucket/runs/dogbreed-hpo-1/checkpoints/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    stub("sagemaker").add_response(
        "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, expected
    )
    args = TUNE_ARGS + [
        "--range",
        "lr=continuous:0.0005:0.05:linear",
        "--range",
        "momentum=continuous:0.8:0.99",
        "--strategy",
        "Random",
        "--no-early-stopping",
        "--spot",
        "--max-runtime",
        "3600",
    ]
    assert main(args) == 0


def describe_tuning(status: str = "Completed") -> dict:
    from datetime import datetime

    return {
        "HyperParameterTuningJobName": "dogbreed-hpo-1",
        "HyperParameterTuningJobArn": "arn:x",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxParallelTrainingJobs": 3},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": datetime(2026, 1, 1),
        "TrainingJobStatusCounters": {},
        "ObjectiveStatusCounters": {},
        "BestTrainingJob": {
            "TrainingJobName": "dogbreed-hpo-1-007-abc",
            "TrainingJobArn": "arn:y",
            "CreationTime": datetime(2026, 1, 1),
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": {"lr": "0.0123", "batch-size": "64", "epochs": "4"},
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "MetricName": "valid:accuracy",
                "Value": 0.8125,
            },
        },
    }


def test_tune_wait_prints_the_best_job_and_its_hyperparameters(
    stub, dogs, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    sm = stub("sagemaker")
    sm.add_response("create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"})
    name = {"HyperParameterTuningJobName": "dogbreed-hpo-1"}
    sm.add_response("describe_hyper_parameter_tuning_job", describe_tuning("InProgress"), name)
    sm.add_response("describe_hyper_parameter_tuning_job", describe_tuning(), name)
    sm.add_response("describe_hyper_parameter_tuning_job", describe_tuning(), name)
    assert main(TUNE_ARGS + ["--wait"]) == 0
    out = capsys.readouterr().out
    assert "best training job dogbreed-hpo-1-007-abc, valid:accuracy=0.8125" in out
    assert "batch-size=64 epochs=4 lr=0.0123" in out


def test_tune_status_needs_no_job_options(stub, capsys) -> None:
    stub("sagemaker").add_response(
        "describe_hyper_parameter_tuning_job",
        describe_tuning(),
        {"HyperParameterTuningJobName": "dogbreed-hpo-1"},
    )
    assert main(["tune", "--status", "dogbreed-hpo-1"]) == 0
    assert "dogbreed-hpo-1-007-abc" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("learning=continuous:0.1:1", "NAME must be a hyperparameter"),
        ("lr=continuous:0.1:0.01", "MIN < MAX"),
        ("lr=continuous:0:0.1", "lr must be a number > 0"),
        ("epochs=integer:2.5:4", "epochs must be an integer"),
        ("batch-size=categorical:", "give categories"),
        ("batch-size=categorical:32,0", "batch-size must be an integer >= 1"),
        ("optimizer=categorical:sgd,rmsprop", "optimizer must be one of"),
        ("lr=uniform:0.1:1", "KIND must be"),
        ("lr=continuous:0.01:0.1:cubic", "scaling must be"),
        (
            "max-bad-fraction=continuous:0.5:1:reverselog",
            "reverselog scaling needs 0 <= MIN < MAX < 1",
        ),
        ("lr=continuous:0:0.5:reverselog", "lr must be a number > 0"),
        (
            "weight-decay=continuous:0.5:1.5:reverselog",
            "reverselog scaling needs 0 <= MIN < MAX < 1",
        ),
    ],
)
def test_bad_ranges_are_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(LaunchError, match=complaint):
        parse_range(text)


def test_reverselog_ranges_within_zero_and_one_are_accepted() -> None:
    assert parse_range("momentum=continuous:0.8:0.999:reverselog").request() == {
        "Name": "momentum",
        "MinValue": "0.8",
        "MaxValue": "0.999",
        "ScalingType": "ReverseLogarithmic",
    }


def test_a_hyperparameter_cannot_be_fixed_and_tuned(stub, capsys) -> None:
    stub("sagemaker"), stub("s3")  # no responses: any request would fail the test
    assert main(TUNE_ARGS + ["--hp", "lr=0.01"]) == 1
    assert "both fixed and tuned: lr" in capsys.readouterr().err


def test_tuning_job_names_are_limited_to_32_characters(stub, capsys) -> None:
    stub("sagemaker"), stub("s3")
    args = [
        a if a != "dogbreed-hpo-1" else "a-tuning-job-name-that-is-far-too-long" for a in TUNE_ARGS
    ]
    assert main(args) == 1
    assert "invalid SageMaker name" in capsys.readouterr().err


def test_a_failed_tuning_job_without_a_best_job_says_so(stub, capsys) -> None:
    described = describe_tuning("Failed")
    del described["BestTrainingJob"]
    described["FailureReason"] = "All training jobs failed."
    stub("sagemaker").add_response(
        "describe_hyper_parameter_tuning_job",
        described,
        {"HyperParameterTuningJobName": "dogbreed-hpo-1"},
    )
    assert main(["tune", "--status", "dogbreed-hpo-1"]) == 1
    err = capsys.readouterr().err
    assert (
        "tuning job dogbreed-hpo-1 (Failed) has no completed training job yet: All training jobs failed."
        in err
    )


def test_hyperband_tunes_epochs_as_its_resource_with_early_stopping_off(stub, dogs, capsys) -> None:
    """AWS: Hyperband needs TrainingJobEarlyStoppingType Off and a resource (MinResource and
    MaxResource); every trial runs epochs=MaxResource and Hyperband stops the weaker ones."""
    expected = expected_tuning_request()
    config = expected["HyperParameterTuningJobConfig"]
    config["Strategy"] = "Hyperband"
    config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 20}}
    config["TrainingJobEarlyStoppingType"] = "Off"
    del config["ParameterRanges"]["IntegerParameterRanges"][0]
    expected["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] = "20"
    stub("sagemaker").add_response(
        "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, expected
    )
    args = TUNE_ARGS + ["--strategy", "Hyperband", "--range", "epochs=integer:1:20"]
    assert main(args) == 0
    assert "started tuning job dogbreed-hpo-1 (10 jobs, 3 at a time)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra",
    [
        ["--no-range", "epochs"],
        ["--range", "epochs=categorical:2,4"],
        ["--no-range", "epochs", "--hp", "epochs=10"],
    ],
)
def test_hyperband_without_an_integer_epochs_range_is_refused(stub, capsys, extra) -> None:
    stub("sagemaker"), stub("s3")
    assert main(TUNE_ARGS + ["--strategy", "Hyperband", *extra]) == 1
    assert "Hyperband needs epochs as its resource" in capsys.readouterr().err


def test_grid_with_the_default_ranges_says_which_are_not_categorical(stub, capsys) -> None:
    stub("sagemaker"), stub("s3")
    assert main(TUNE_ARGS + ["--strategy", "Grid"]) == 1
    assert (
        "Grid takes only categorical ranges; not lr (continuous), epochs (integer)"
        in capsys.readouterr().err
    )


GRID_ARGS = [
    *(a for a in TUNE_ARGS if a not in ("--max-jobs", "10")),
    "--strategy",
    "Grid",
    "--range",
    "lr=categorical:0.001,0.01,0.1",
    "--no-range",
    "epochs",
    "--hp",
    "epochs=3",
]


def test_grid_sends_every_combination_as_the_job_count(stub, dogs, capsys) -> None:
    expected = expected_tuning_request()
    config = expected["HyperParameterTuningJobConfig"]
    config["Strategy"] = "Grid"
    config["ResourceLimits"]["MaxNumberOfTrainingJobs"] = 15  # 3 lr x 5 batch sizes
    config["ParameterRanges"] = {
        "ContinuousParameterRanges": [],
        "IntegerParameterRanges": [],
        "CategoricalParameterRanges": [
            {"Name": "lr", "Values": ["0.001", "0.01", "0.1"]},
            {"Name": "batch-size", "Values": ["32", "64", "128", "256", "512"]},
        ],
    }
    expected["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] = "3"
    stub("sagemaker").add_response(
        "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, expected
    )
    assert main(GRID_ARGS) == 0
    assert "(15 jobs, 3 at a time)" in capsys.readouterr().out


def test_grid_refuses_a_job_count_other_than_the_combinations(stub, capsys) -> None:
    stub("sagemaker"), stub("s3")
    assert main(GRID_ARGS + ["--max-jobs", "12"]) == 1
    assert "Grid runs every combination once: 15 jobs" in capsys.readouterr().err


def test_no_range_drops_a_default_and_refuses_an_unknown_one(stub, capsys) -> None:
    stub("sagemaker"), stub("s3")
    assert main(TUNE_ARGS + ["--no-range", "momentum"]) == 1
    assert "--no-range momentum: not a default range" in capsys.readouterr().err


def test_spot_trials_share_one_checkpoint_uri_and_tune_says_so(stub, dogs, capsys) -> None:
    """A tuning job has one CheckpointConfig for all trials: each trial keeps its checkpoint under
    its own job name there (the trainer's side); the launcher says so in the output and --help."""
    expected = expected_tuning_request()
    definition = expected["TrainingJobDefinition"]
    definition["StoppingCondition"]["MaxWaitTimeInSeconds"] = 28800
    definition["EnableManagedSpotTraining"] = True
    definition["CheckpointConfig"] = {
        "S3Uri": "s3://bucket/ckpt/hpo-1/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    stub("sagemaker").add_response(
        "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": "arn:x"}, expected
    )
    assert main(TUNE_ARGS + ["--spot", "--checkpoint-s3", "s3://bucket/ckpt/hpo-1"]) == 0
    assert (
        "checkpoints: all trials share s3://bucket/ckpt/hpo-1/; each keeps its own under "
        "s3://bucket/ckpt/hpo-1/<job name>/"
    ) in capsys.readouterr().out

    from dogbreed.launch.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for phrase in (
        "all trials of a tuning job share one checkpoint URI",
        "under <uri>/<its training job name>/ (the trainer reads TRAINING_JOB_NAME)",
        "deletes that folder when it completes; SageMaker deletes it in S3 too",
        "SageMaker copies everything under the URI into it",
        "50-trial job",
    ):
        assert phrase in help_text
