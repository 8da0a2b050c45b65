"""Data without train/ valid/ test/ holding the same class folders is refused before any job."""

from __future__ import annotations

import pytest

from dogbreed.launch.cli.main import main

from .conftest import BREEDS, stub_folders, stub_preflight
from .test_train_job import TRAIN_ARGS, plain_request
from .test_tune import TUNE_ARGS


def with_data(*channels: str) -> list[str]:
    """TRAIN_ARGS without its --data, plus ``channels`` (e.g. "--train", "s3://...")."""
    at = TRAIN_ARGS.index("--data")
    return TRAIN_ARGS[:at] + TRAIN_ARGS[at + 2 :] + list(channels) + ["--no-debugger"]


@pytest.fixture
def nothing_sent(stub):
    return stub("sagemaker"), stub("s3")  # no responses: a request would fail the test


def test_split_channels_without_test_are_refused_before_any_request(nothing_sent, capsys):
    args = with_data("--train", "s3://bucket/dogs/train", "--valid", "s3://bucket/dogs/valid")
    assert main(args) == 1
    printed = capsys.readouterr()
    assert "no test split: the trainer needs train/, valid/ and test/" in printed.err
    assert "starting training job" not in printed.out


def test_tune_without_a_test_channel_is_refused_before_any_request(nothing_sent, capsys):
    at = TUNE_ARGS.index("--test")
    assert main(TUNE_ARGS[:at] + TUNE_ARGS[at + 2 :]) == 1
    assert "no test split" in capsys.readouterr().err


def test_a_data_prefix_without_test_is_refused(nothing_sent, capsys):
    sm, s3 = nothing_sent
    stub_folders(s3, "bucket", "dogImages/", ["train", "valid", "__MACOSX"])
    assert main(TRAIN_ARGS) == 1
    assert (
        "no test split: the trainer needs train/, valid/ and test/ (--train, --valid and --test, "
        "or --data holding all three); s3://bucket/dogImages holds ['__MACOSX', 'train', 'valid']"
    ) in capsys.readouterr().err


def test_splits_with_different_class_folders_are_refused(nothing_sent, capsys):
    sm, s3 = nothing_sent
    stub_folders(s3, "bucket", "dogImages/", ["test", "train", "valid"])
    stub_folders(s3, "bucket", "dogImages/train/", BREEDS)
    stub_folders(s3, "bucket", "dogImages/valid/", BREEDS)
    stub_folders(s3, "bucket", "dogImages/test/", [*BREEDS[:2], "004.Akita"])
    assert main(TRAIN_ARGS) == 1
    assert (
        "class folders differ between train and test: only in train: ['003.Airedale_terrier']; "
        "only in test: ['004.Akita']"
    ) in capsys.readouterr().err


def test_a_split_without_class_folders_is_refused(nothing_sent, capsys):
    sm, s3 = nothing_sent
    stub_folders(s3, "bucket", "dogImages/", ["test", "train", "valid"])
    stub_folders(s3, "bucket", "dogImages/train/", [])
    assert main(TRAIN_ARGS) == 1
    assert "split 'train' at s3://bucket/dogImages/train/ has no class folders" in (
        capsys.readouterr().err
    )


def test_a_validation_folder_serves_as_valid(stub, capsys):
    """The trainer reads valid/, validation/ or val/; the check accepts what it accepts."""
    s3 = stub("s3")
    stub_folders(s3, "bucket", "dogImages/", ["test", "train", "validation"])
    for split in ("train", "validation", "test"):
        stub_folders(s3, "bucket", f"dogImages/{split}/", BREEDS)
    expected = plain_request()
    del expected["ProfilerRuleConfigurations"]
    expected["ProfilerConfig"] = {"DisableProfiler": True}
    stub_preflight(stub)
    stub("sagemaker").add_response("create_training_job", {"TrainingJobArn": "arn:t"}, expected)
    assert main(TRAIN_ARGS + ["--no-debugger", "--no-profiler"]) == 0
    assert "data: 3 classes in s3://bucket/dogImages/train/" in capsys.readouterr().out


def test_local_mode_checks_the_folders_before_docker(tmp_path, capsys):
    for split in ("train", "valid"):
        (tmp_path / "dogs" / split / BREEDS[0]).mkdir(parents=True)
    args = ["train", "--local", "--image", "dogbreed-never-built:0", "--name", "local-1"]
    args += ["--data", str(tmp_path / "dogs"), "--output", str(tmp_path / "out")]
    assert main(args) == 1
    assert "no test split" in capsys.readouterr().err
