"""`dogbreed report` writes S3 objects only inside its folder (issue 23, finding 2).

Anyone who can write under a job's debug or profiler output chooses the keys `report` downloads.
On da1db7c the keys below that hold ``..`` or start with ``/`` were written outside the target
folder (3 of 3 planted files landed beside it; 4 of 4 through the command); now they are skipped
and named, and the others still arrive.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from dogbreed.launch.cli.main import main
from dogbreed.launch.training import report
from dogbreed.launch.training.report import download_prefix, safe_local_path

from .conftest import REGION, training_job_description

BUCKET = "bucket"
JOB = "dogbreed-train-1"
TRIAL = f"runs/{JOB}/debug-output/"
RULE_OUTPUT = f"runs/{JOB}/rule-output/"


@pytest.fixture
def s3(s3_url: str) -> Any:
    """An empty moto S3 holding ``BUCKET``; every client of the test talks to it."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def plant(s3: Any, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("index/000/step.json", "index/000/step.json"),
        ("events/./a//b", "events/a/b"),
        ("..\\..\\x", "..\\..\\x"),  # a backslash is part of a POSIX file name
        ("../x", None),
        ("a/../../x", None),
        ("/etc/passwd", None),
        ("a/..", None),  # the folder itself
        (".", None),
        ("a\x00b", None),
    ],
)
def test_safe_local_path(tmp_path: Path, name: str, inside: str | None) -> None:
    root = tmp_path / "out"
    expected = None if inside is None else root / inside
    assert safe_local_path(root, name) == expected


def test_a_link_inside_the_folder_that_points_out_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert safe_local_path(root, "link/x") is None


def test_keys_that_would_leave_the_folder_are_skipped_and_named(s3: Any, tmp_path: Path) -> None:
    normal = [TRIAL + "index/000000000/000000000000_worker_0.json", TRIAL + "events/a.tfevents"]
    escaping = [
        TRIAL + "../planted-dotdot",
        TRIAL + "events/../../planted-nested",
        TRIAL + str(tmp_path / "planted-absolute"),  # the key's rest starts with "/"
    ]
    plant(s3, [*normal, *escaping, TRIAL + "..\\..\\planted-backslash"])
    out = tmp_path / "out"

    copied = download_prefix(s3, f"s3://{BUCKET}/{TRIAL}", out)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing written beside it
    assert files_under(out) == [
        "..\\..\\planted-backslash",
        "events/a.tfevents",
        "index/000000000/000000000000_worker_0.json",
    ]
    assert (out / "events" / "a.tfevents").read_bytes() == (TRIAL + "events/a.tfevents").encode()
    assert sorted(copied.skipped) == sorted(escaping)
    warning = copied.warning()
    assert warning is not None and "skipped 3 S3 object(s)" in warning and str(out) in warning
    assert all(repr(key) in warning for key in escaping)


def test_a_key_that_is_a_file_and_a_folder_at_once_is_skipped_and_named(
    s3: Any, tmp_path: Path
) -> None:
    """S3 holds ``a`` and ``a/b`` side by side; a folder cannot. On faf1036 the download stopped
    with FileExistsError, and the report with it."""
    plant(s3, [TRIAL + "a", TRIAL + "a/b", TRIAL + "events/x"])
    out = tmp_path / "out"

    copied = download_prefix(s3, f"s3://{BUCKET}/{TRIAL}", out)

    assert files_under(out) == ["a", "events/x"]
    assert copied.clashing == [TRIAL + "a/b"] and copied.skipped == []
    warning = copied.warning()
    assert (
        warning is not None and "skipped 1 S3 object(s) whose key is a file and a folder" in warning
    )
    assert repr(TRIAL + "a/b") in warning


def test_the_report_command_names_what_it_skipped(
    s3: Any, stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Both downloads of `dogbreed report --job`: the trial (into a temporary folder, put in
    ``tmp_path`` here so that an escape would land where the test sees it) and the profiler
    report (into ``--out``)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    trial_file = TRIAL + "index/000000000/000000000000_worker_0.json"
    trial_escaping = [TRIAL + "../../planted-trial", TRIAL + str(tmp_path / "planted-absolute")]
    report_file = RULE_OUTPUT + "ProfilerReport/profiler-output/profiler-report.html"
    report_escaping = [
        RULE_OUTPUT + "ProfilerReport/../../../planted-report",
        RULE_OUTPUT + "ProfilerReport/x/../../../../planted-report-nested",
    ]
    plant(s3, [trial_file, *trial_escaping, report_file, *report_escaping])
    seen: list[list[str]] = []

    class EmptyTrial:
        def tensor_names(self, collection: str) -> list[str]:
            return []

    def load_trial(folder: str) -> EmptyTrial:
        seen.append(files_under(Path(folder)))
        return EmptyTrial()

    monkeypatch.setattr(report, "load_trial", load_trial)
    stub("sagemaker").add_response(
        "describe_training_job",
        training_job_description(
            JOB,
            DebugHookConfig={"S3OutputPath": f"s3://{BUCKET}/runs"},
            ProfilerConfig={"S3OutputPath": f"s3://{BUCKET}/runs"},
        ),
        {"TrainingJobName": JOB},
    )
    out = tmp_path / "out"

    assert main(["report", "--job", JOB, "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["out", "tmp"]  # nothing written beside them
    assert os.listdir(temporary) == []  # the trial's copy is gone
    assert seen == [["index/000000000/000000000000_worker_0.json"]]
    assert files_under(out) == [
        "profiler-report/ProfilerReport/profiler-output/profiler-report.html",
        "summary.txt",
    ]
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in printed
    assert summary.count("warning: skipped 2 S3 object(s)") == 2
    assert f"outside {out / 'profiler-report'}: " in summary
    assert all(repr(key) in summary for key in trial_escaping + report_escaping)
    assert "profiler report: 1 files in" in summary
