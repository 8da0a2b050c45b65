"""`make gpu-check` in its dry mode: the same code paths on the CPU at tiny sizes, so that the
GPU check still runs when a GPU machine comes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
FIGURES = {
    "train": ("compute_img_s", "pipeline_img_s", "ratio"),
    "torchrun": ("job_seconds", "logged_img_s", "limit_img_s", "ratio"),
}
SERVE_FIGURES = ("img_s", "p50_ms", "p99_ms", "limit_img_s", "ratio")


def test_dry_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry", "--out", str(out), "--budget-s", "240"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert str(out) in run.stdout
    report = json.loads(out.read_text())
    assert report["mode"] == "dry"
    assert {"name", "torch", "cuda"} <= set(report["device"])
    assert report["device"]["type"] == "cpu"
    for section, names in FIGURES.items():
        for name in names:
            assert report[section][name] > 0, (section, name, report[section])
    assert report["torchrun"]["completed"] is True
    assert report["train"]["channels_last"] is True
    levels = report["serve"]["concurrency"]
    assert sorted(levels, key=int) == ["1", "8", "32"]
    for concurrency, figures in levels.items():
        for name in SERVE_FIGURES:
            assert figures[name] > 0, (concurrency, name, figures)
