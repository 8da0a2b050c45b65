"""It learns: real images (scikit-learn's bundled scans of handwritten digits), from scratch."""

from __future__ import annotations

import json
import shutil

from dogbreed.artifact import load_artifact
from dogbreed.train.sample_data import write_digits


def test_training_from_scratch_is_far_above_chance(make_job) -> None:
    job = make_job(
        {
            "pretrained": "false",
            "image-size": "32",
            "epochs": "6",
            "batch-size": "32",
            "lr": "0.05",
            "label-smoothing": "0.1",
            "log-interval": "100",
        }
    )
    data = job.base / "input" / "data" / "training"
    for child in data.iterdir():
        shutil.rmtree(child)
    write_digits(data, {"train": 1000, "valid": 300, "test": 497})
    result = job.run(timeout=900, OMP_NUM_THREADS="2")
    assert result.returncode == 0, result.stdout[-4000:]
    _, spec = load_artifact(job.model_dir)
    history = json.loads((job.output / "data" / "metrics.json").read_text())
    print("valid accuracy per epoch:", [round(r["valid_accuracy"], 3) for r in history])
    print(f"test accuracy {spec.metrics['test_accuracy']:.3f} (chance 0.100)")
    assert spec.metrics["test_accuracy"] >= 0.6
