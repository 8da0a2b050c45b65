"""`dogbreed report` on the smdebug trial a real local training run wrote."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from botocore.response import StreamingBody
from PIL import Image

from dogbreed.launch.cli.main import main
from dogbreed.launch.training.report import EVAL_COLOR, TRAIN_COLOR, rule_lines

from .conftest import training_job_description

TRAIN_STEPS = 15  # 40 training images / batch 8 = 5 steps per epoch, 3 epochs, losses every step


def pixels_of(image: np.ndarray, hex_color: str, tolerance: int = 12) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3].astype(int) - rgb).max(axis=-1) <= tolerance).sum())


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_report_draws_losses_and_gradient_norms_from_a_real_trial(
    trained_job, tmp_path, capsys
) -> None:
    out = tmp_path / "report"
    assert main(["report", str(trained_job.tensors), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "gradient_norms.png",
        "losses.png",
        "summary.txt",
    ]

    losses = load_png(out / "losses.png")
    assert losses.shape[0] > 200 and losses.shape[1] > 400
    assert pixels_of(losses, TRAIN_COLOR) > 300  # the TRAIN curve and its markers
    assert pixels_of(losses, EVAL_COLOR) > 150  # the EVAL curve

    gradients = load_png(out / "gradient_norms.png")
    gray = (gradients.max(axis=-1).astype(int) - gradients.min(axis=-1)) < 20
    assert (~gray).sum() > 20_000  # coloured lines and bars, not an empty frame
    assert len(np.unique(gradients[~gray].reshape(-1, 3), axis=0)) > 50  # one colour per layer

    summary = (out / "summary.txt").read_text()
    assert summary.strip() in printed
    assert f"TRAIN: {TRAIN_STEPS} steps" in summary
    assert "EVAL:" in summary
    assert "gradients: 62 layers" in summary  # ResNet18 has 62 parameter tensors


def job_description(tensors: Path) -> dict:
    statuses = [
        ("VanishingGradient", "NoIssuesFound", None),
        (
            "Overfit",
            "IssuesFound",
            "RuleEvaluationConditionMet: Evaluation of the rule Overfit at step 12 resulted in the condition being met",
        ),
        ("LossNotDecreasing", "InProgress", None),
    ]
    return training_job_description(
        DebugHookConfig={"S3OutputPath": "s3://bucket/runs"},
        ProfilerConfig={"S3OutputPath": "s3://bucket/runs"},
        DebugRuleEvaluationStatuses=[
            {
                "RuleConfigurationName": n,
                "RuleEvaluationStatus": s,
                **({"StatusDetails": d} if d else {}),
            }
            for n, s, d in statuses
        ],
        ProfilerRuleEvaluationStatuses=[
            {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "NoIssuesFound"}
        ],
    )


def test_report_with_a_job_lists_rule_verdicts_and_fetches_the_profiler_report(
    trained_job, stub, tmp_path, capsys
) -> None:
    sm, s3 = stub("sagemaker"), stub("s3")
    sm.add_response(
        "describe_training_job",
        job_description(trained_job.tensors),
        {"TrainingJobName": "dogbreed-train-1"},
    )
    prefix = "runs/dogbreed-train-1/rule-output/"
    keys = {
        "ProfilerReport/profiler-output/profiler-report.html": b"<html>report</html>",
        "ProfilerReport/profiler-output/profiler-reports/OverallSystemUsage.json": b'{"cpu": 12}',
    }
    s3.add_response(
        "list_objects_v2",
        {
            "Contents": [{"Key": prefix + k} for k in keys]
            + [{"Key": prefix + "Overfit/result.json"}],
            "IsTruncated": False,
        },
        {"Bucket": "bucket", "Prefix": prefix},
    )
    for key, data in keys.items():
        s3.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(data), len(data))},
            {"Bucket": "bucket", "Key": prefix + key},
        )
    out = tmp_path / "report"
    args = ["report", str(trained_job.tensors), "--job", "dogbreed-train-1", "--out", str(out)]
    assert main(args) == 0
    summary = (out / "summary.txt").read_text()
    assert "rule VanishingGradient: NoIssuesFound" in summary
    assert "rule Overfit: FIRED - RuleEvaluationConditionMet" in summary
    assert "rule LossNotDecreasing: InProgress" in summary
    assert "rule ProfilerReport: NoIssuesFound" in summary
    assert "rules fired: 1 of 4" in summary
    report = out / "profiler-report" / "ProfilerReport" / "profiler-output"
    assert (report / "profiler-report.html").read_bytes() == b"<html>report</html>"
    assert (report / "profiler-reports" / "OverallSystemUsage.json").read_bytes() == b'{"cpu": 12}'
    assert not (out / "profiler-report" / "Overfit").exists()


def test_report_on_a_folder_that_is_not_a_trial(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "not an smdebug trial" in capsys.readouterr().err


def test_an_s3_trial_is_read_with_the_sessions_s3_client(
    trained_job, stub, tmp_path, capsys, monkeypatch
):
    """smdebug's own S3 client ignores --profile and --region: the launcher copies the trial with
    the session's client (stubbed here) and points smdebug at the local copy."""
    import smdebug.trials

    create_trial = smdebug.trials.create_trial

    def local_only(path: str, *args, **kwargs):
        assert not str(path).startswith("s3://"), "smdebug would read S3 with its own client"
        return create_trial(path, *args, **kwargs)

    monkeypatch.setattr(smdebug.trials, "create_trial", local_only)
    s3 = stub("s3")
    prefix = "runs/dogbreed-train-1/debug-output/"
    files = sorted(p for p in trained_job.tensors.rglob("*") if p.is_file())
    keys = [prefix + p.relative_to(trained_job.tensors).as_posix() for p in files]
    s3.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": key} for key in keys], "IsTruncated": False},
        {"Bucket": "bucket", "Prefix": prefix},
    )
    for key, path in zip(keys, files, strict=True):
        data = path.read_bytes()
        s3.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(data), len(data))},
            {"Bucket": "bucket", "Key": key},
        )
    out = tmp_path / "report"
    trial = "s3://bucket/" + prefix.rstrip("/")
    assert main(["report", trial, "--profile", "dogs", "--out", str(out)]) == 0
    summary = (out / "summary.txt").read_text()
    assert f"trial: {trial}" in summary
    assert f"TRAIN: {TRAIN_STEPS} steps" in summary
    assert "gradients: 62 layers" in summary
    assert sorted(p.name for p in out.iterdir()) == [
        "gradient_norms.png",
        "losses.png",
        "summary.txt",
    ]


def test_an_empty_s3_trial_says_so(stub, tmp_path, capsys):
    stub("s3").add_response(
        "list_objects_v2",
        {"KeyCount": 0, "IsTruncated": False},
        {"Bucket": "bucket", "Prefix": "nothing/"},
    )
    assert main(["report", "s3://bucket/nothing", "--out", str(tmp_path / "r")]) == 1
    assert "s3://bucket/nothing: no objects there" in capsys.readouterr().err


def test_a_job_without_rules_says_so_and_counts_nothing() -> None:
    assert rule_lines({}) == ["rules: the job has no Debugger or Profiler rules"]
    one = {
        "DebugRuleEvaluationStatuses": [
            {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "NoIssuesFound"}
        ]
    }
    assert rule_lines(one)[-1] == "rules fired: 0 of 1"
