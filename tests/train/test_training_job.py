"""The whole job under the toolkit's `train`: artifacts, metric lines, progress, early stopping."""

from __future__ import annotations

import json
import re

import torch
from PIL import Image

from dogbreed.artifact import load_artifact
from dogbreed.metrics import METRIC_NAMES, parse_metric_line


def test_job_writes_model_history_and_curves(make_job) -> None:
    job = make_job({"epochs": "3", "log-interval": "2"}, layout="channels")
    result = job.run()
    assert result.returncode == 0, result.stdout[-4000:]
    assert (job.output / "success").exists() and not (job.output / "failure").exists()

    model, spec = load_artifact(job.model_dir)
    assert spec.class_names == ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
    assert (spec.image_size, spec.architecture) == (64, "resnet18")
    assert spec.hyperparameters["batch_size"] == 8 and spec.hyperparameters["epochs"] == 3
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4)
    raw = json.loads((job.model_dir / "model.json").read_text())  # plain JSON, nothing pickled
    assert set(raw) >= {"class_names", "image_size", "mean", "std", "architecture", "metrics"}

    history = json.loads((job.output / "data" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    best = max(history, key=lambda row: row["valid_accuracy"])
    assert spec.metrics["best_epoch"] == best["epoch"]  # the best epoch is what was saved
    assert spec.metrics["valid_accuracy"] == best["valid_accuracy"]
    csv_lines = (job.output / "data" / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss,train_accuracy,valid_loss,valid_accuracy")
    with Image.open(job.output / "data" / "training_curves.png") as png:
        assert png.format == "PNG" and png.width >= 600
        assert len(png.convert("L").getcolors(maxcolors=100_000)) > 20  # lines were drawn


def test_metric_lines_parse_with_the_sagemaker_regexes(make_job) -> None:
    job = make_job({"epochs": "2"})
    result = job.run()
    assert result.returncode == 0, result.stdout[-4000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[metrics]")]
    assert len(lines) == 3  # two epochs and the final test line
    for line in lines[:2]:
        parsed = parse_metric_line(line)
        wanted = {
            METRIC_NAMES[k]
            for k in (
                "epoch",
                "train_loss",
                "train_accuracy",
                "valid_loss",
                "valid_accuracy",
                "lr",
                "images_per_sec",
            )
        }
        assert set(parsed) == wanted, line
        assert 0 <= parsed["valid:accuracy"] <= 1 and parsed["train:images_per_sec"] > 0
    final = parse_metric_line(lines[2])
    assert set(final) == {"epoch", "valid:loss", "valid:accuracy", "test:loss", "test:accuracy"}
    _, spec = load_artifact(job.model_dir)
    assert final["test:accuracy"] == round(spec.metrics["test_accuracy"], 6)
    # Tuning ranks by the last valid:accuracy printed: the kept (best) epoch's, not the last's.
    last_valid = [parse_metric_line(line)["valid:accuracy"] for line in lines][-1]
    assert last_valid == round(spec.metrics["valid_accuracy"], 6) == final["valid:accuracy"]
    assert final["epoch"] == spec.metrics["best_epoch"]


def test_progress_lines_show_throughput_and_eta(make_job) -> None:
    job = make_job({"epochs": "1", "log-interval": "1"})
    result = job.run()
    assert result.returncode == 0, result.stdout[-4000:]
    progress = re.findall(
        r"epoch 1/1 step (\d+)/5 batch \d+ loss [\d.]+ acc [\d.]+ \| ([\d.]+) img/s \| epoch ETA (\d+:\d\d:\d\d)",
        result.stdout,
    )
    assert [int(step) for step, _, _ in progress] == [1, 2, 3, 4, 5]
    assert all(float(rate) > 0 for _, rate, _ in progress) and progress[-1][2] == "0:00:00"


def test_early_stopping_ends_the_job_after_patience_epochs(make_job) -> None:
    # A vanishing learning rate on the head only: validation accuracy cannot improve.
    job = make_job({"epochs": "6", "patience": "2", "lr": "1e-9", "trainable": "head"})
    result = job.run()
    assert result.returncode == 0, result.stdout[-4000:]
    history = json.loads((job.output / "data" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert "early stopping: no valid accuracy gain for 2 epochs (best" in result.stdout
    _, spec = load_artifact(job.model_dir)
    assert spec.metrics["best_epoch"] == 1
