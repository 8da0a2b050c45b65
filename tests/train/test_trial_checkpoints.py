"""Tuning trials share one checkpoint location: each keeps to its own folder, named after the job."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import torch

from dogbreed.model import build_model
from dogbreed.train.checkpoint import CHECKPOINT_FILE

HP = {"epochs": "2", "batch-size": "4", "log-interval": "1", "workers": "1"}
TRIALS = {"tune-001-3b2a1c9e": "0.01", "tune-002-7f4e0d21": "0.05"}


def test_trials_sharing_a_checkpoint_folder_each_resume_their_own(
    make_job, start_job, tmp_path: Path
) -> None:
    shared = tmp_path / "shared-checkpoints"  # what SageMaker copies into every trial
    jobs = {name: make_job({**HP, "lr": lr}) for name, lr in TRIALS.items()}
    env = {
        name: {"TRAINING_JOB_NAME": name, "DOGBREED_CHECKPOINT_DIR": str(shared)} for name in jobs
    }

    for name, job in jobs.items():  # both start from scratch, then are interrupted
        running = start_job(job, **env[name])
        running.wait_for("epoch 2/2 step 2/10", timeout=120)
        running.process.send_signal(signal.SIGTERM)
        running.wait_exit(60)
        assert "resuming from" not in running.log, running.log[-3000:]
        assert job.failure().startswith("stopped by SIGTERM in epoch 2"), job.failure()
        assert str(shared / name) in job.failure()
    assert sorted(p.name for p in shared.iterdir()) == sorted(TRIALS)

    for name, job in jobs.items():  # each resumes its own checkpoint, not the other's
        result = job.run(**env[name])
        assert result.returncode == 0, result.stdout[-3000:]
        assert f"resuming from {shared / name / CHECKPOINT_FILE}: epoch 2, " in result.stdout
        assert json.loads((job.model_dir / "model.json").read_text())["hyperparameters"][
            "lr"
        ] == float(TRIALS[name])

    assert list(shared.iterdir()) == []  # completed trials leave nothing for later ones to copy


def test_a_run_without_a_job_name_uses_the_folder_itself_and_keeps_its_checkpoint(
    make_job,
) -> None:
    job = make_job({**HP, "epochs": "1"})
    result = job.run()
    assert result.returncode == 0, result.stdout[-3000:]
    checkpoint = torch.load(job.checkpoints / CHECKPOINT_FILE, weights_only=True)
    assert set(checkpoint) >= {"model", "optimizer", "state"}


def test_a_full_size_checkpoint_is_what_an_interrupted_trial_leaves(tmp_path: Path) -> None:
    """The figure docs/training.md gives: ResNet18 with 133 classes, SGD with momentum."""
    model = build_model(133, None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.zeros(2, 3, 64, 64)).sum().backward()
    optimizer.step()
    best = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "c.pt"
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "best": best}, path
    )
    size_mb = path.stat().st_size / 1e6
    print(f"checkpoint of an interrupted trial: {size_mb:.0f} MB")
    assert 120 < size_mb < 150
