"""The train image under SageMaker's training contract, on a real Docker engine."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from e2e_support import make_opt_ml, run, run_training

from dogbreed.artifact import load_artifact
from dogbreed.metrics import parse_metric_line
from dogbreed.splits import class_label
from dogbreed.train.sample_data import write_digits


def test_train_writes_the_model_and_reports_success(trained_job, sample_data: Path) -> None:
    assert trained_job.returncode == 0, trained_job.log[-4000:]
    opt_ml = trained_job.opt_ml
    assert (opt_ml / "output" / "success").is_file()
    assert not (opt_ml / "output" / "failure").exists()

    model, spec = load_artifact(trained_job.model_dir)
    breeds = [class_label(p.name) for p in sorted((sample_data / "train").iterdir())]
    assert spec.class_names == breeds
    assert spec.image_size == 64
    assert model.fc.out_features == len(breeds)
    # The export is on by default: fp32 ONNX checked against torch, int8 where accurate enough.
    assert (opt_ml / "model" / "model.onnx").is_file(), trained_job.log[-4000:]
    assert spec.onnx["files"][0] == "model.onnx" and spec.onnx["validation_images"] == 16
    assert spec.onnx["fp32_check"]["max_abs_diff"] <= 1e-4
    assert sorted(p.name for p in opt_ml.glob("model/*.onnx")) == sorted(spec.onnx["files"])

    metric_lines = [m for m in map(parse_metric_line, trained_job.log.splitlines()) if m]
    epochs = {m["epoch"] for m in metric_lines if "epoch" in m}
    assert epochs == {1.0, 2.0}, trained_job.log[-3000:]
    assert any("valid:accuracy" in m for m in metric_lines)


def test_train_image_defaults_to_train_under_the_toolkit(train_image: str) -> None:
    inspected = run(["docker", "image", "inspect", train_image])
    config = json.loads(inspected.stdout)[0]["Config"]
    assert config["Cmd"] == ["train"]
    assert not config["Entrypoint"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["SAGEMAKER_TRAINING_MODULE"] == "dogbreed.train.toolkit:train"
    assert env["TORCH_HOME"] == "/opt/torch"
    assert env["DOGBREED_ONNX_SITE"] == "/opt/dogbreed/onnx-site"
    offline = run(["docker", "run", "--rm", train_image, "dogbreed-export", "--help"])
    assert offline.returncode == 0 and "--data" in offline.stdout, offline.stderr


def test_a_broken_channel_fails_the_job_with_a_reason(
    train_image: str, sample_data: Path, scratch_dir: Path
) -> None:
    broken = scratch_dir / "broken-train"
    broken.mkdir()
    (broken / "001.Affenpinscher").mkdir()
    (broken / "001.Affenpinscher" / "not-a-picture.jpg").write_bytes(b"this is not a JPEG")
    opt_ml = make_opt_ml(
        scratch_dir / "opt_ml",
        {"train": broken, "valid": sample_data / "valid", "test": sample_data / "test"},
    )

    job = run_training(train_image, opt_ml)

    assert job.returncode != 0, job.log[-3000:]
    failure = opt_ml / "output" / "failure"
    assert failure.is_file(), job.log[-3000:]
    reason = failure.read_text()
    assert reason.strip(), "the failure file is empty"
    assert "train" in reason, reason
    assert not (opt_ml / "output" / "success").exists()
    assert not (opt_ml / "model" / "model.pt").exists()


def test_bad_hyperparameters_fail_before_training(
    train_image: str, sample_data: Path, scratch_dir: Path
) -> None:
    opt_ml = make_opt_ml(
        scratch_dir / "opt_ml",
        {"training": sample_data},
        {"epochs": "2", "lr": "-1", "pretrained": "false"},
    )

    job = run_training(train_image, opt_ml)

    assert job.returncode != 0
    reason = (opt_ml / "output" / "failure").read_text()
    assert "lr" in reason and "-1" in reason, reason


def test_one_training_channel_and_a_pretrained_channel(
    train_image: str, sample_data: Path, scratch_dir: Path, tmp_path: Path
) -> None:
    """The other documented layout: one `training` channel with train/ valid/ test/, weights from
    a `pretrained` channel (how network-isolated jobs get ImageNet weights without a baked copy)."""
    import torch
    from torchvision.models import resnet18

    weights = scratch_dir / "weights"
    weights.mkdir()
    torch.save(resnet18(weights=None).state_dict(), weights / "resnet18.pth")
    opt_ml = make_opt_ml(
        scratch_dir / "opt_ml",
        {"training": sample_data, "pretrained": weights},
        {"epochs": "1", "batch-size": "8", "image-size": "64", "workers": "0"},
    )

    job = run_training(train_image, opt_ml)

    assert job.returncode == 0, job.log[-4000:]
    assert (opt_ml / "model" / "model.pt").is_file()
    shutil.rmtree(opt_ml, ignore_errors=True)


def _digit_photos(scratch_dir: Path, train: int) -> Path:
    root = scratch_dir / "digits"
    write_digits(root, {"train": train, "valid": 100, "test": 100}, size=96, suffix=".jpg")
    return root


LOADING = re.compile(
    r"data loading: (\d+) loader process\(es\) x (\d) prefetched, batches of (\d+) cross as uint8"
    r" in (\d+) piece\(s\) of <= (\d+); shared memory needed ([\d.]+) MB of ([\d.]+) MB free"
)


@pytest.mark.parametrize(
    ("batch", "extra"),
    [
        (64, {"epochs": "1"}),
        # A full 512-image backward pass at 224 px does not fit this machine's 24 GiB: train the
        # head only. The loader bytes, the transit plan and the step's batch are the real ones.
        (512, {"epochs": "1", "trainable": "head"}),
    ],
)
def test_dockers_default_shm_trains_at_224_px(
    train_image: str, scratch_dir: Path, figures: dict[str, str], batch: int, extra: dict
) -> None:
    # Two steps at 64; at 512 exactly one batch (a smaller split would shrink the batch).
    data = _digit_photos(scratch_dir, train=128 if batch == 64 else 512)
    hyperparameters = {
        "batch-size": str(batch),
        "image-size": "224",
        "pretrained": "false",
        **extra,
    }
    opt_ml = make_opt_ml(scratch_dir / "opt_ml", {"training": data}, hyperparameters)

    job = run_training(train_image, opt_ml, timeout=900)  # no --shm-size: Docker's 64 MB

    assert job.returncode == 0, job.log[-4000:]
    assert (opt_ml / "model" / "model.pt").is_file() and (opt_ml / "output" / "success").is_file()
    plan = LOADING.search(job.log)
    assert plan, job.log[-4000:]
    workers, _, planned, pieces, _, needed, free = plan.groups()
    assert int(planned) == batch and int(workers) >= 1
    assert 60 < float(free) <= 67.2, f"not Docker's default /dev/shm: {free} MB"
    assert float(needed) <= float(free) / 2
    steps = re.findall(r"step \d+/\d+ batch (\d+) ", job.log)
    assert steps and int(steps[0]) == batch, steps  # the step trained on the whole batch
    figures[f"train image, 64 MB shm, batch {batch} at 224 px"] = (
        f"{pieces} piece(s) per batch, {needed} MB of {free} MB shm, {job.seconds:.0f} s"
    )
