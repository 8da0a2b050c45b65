"""SIGTERM mid-training writes a checkpoint and exits; a restart resumes and matches an
uninterrupted run with the same seed."""

from __future__ import annotations

import json
import signal
import time

import torch

from dogbreed.artifact import WEIGHTS_FILE

HP = {"epochs": "3", "batch-size": "4", "log-interval": "1", "seed": "7", "workers": "1"}


def _history(job) -> list[dict[str, float]]:
    return json.loads((job.output / "data" / "metrics.json").read_text())


def test_sigterm_checkpoints_and_a_restart_finishes_like_an_uninterrupted_run(make_job) -> None:
    reference = make_job(HP)
    result = reference.run()
    assert result.returncode == 0, result.stdout[-3000:]

    job = make_job(HP)
    process = job.popen()
    output = []
    for line in process.stdout:
        output.append(line)
        if "epoch 2/3 step 3/10" in line:
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            break
    output.extend(process.stdout)
    process.wait(timeout=60)
    stopped_after = time.monotonic() - signalled
    text = "".join(output)
    assert process.returncode == 1, text[-3000:]
    assert stopped_after < 20, f"took {stopped_after:.1f} s to stop"
    assert "received SIGTERM: stopping after the current step" in text
    assert "ExitCode 143" in text
    assert job.failure().startswith("stopped by SIGTERM in epoch 2 after ")
    assert "run the job again with the same checkpoint location to resume" in job.failure()
    assert (job.checkpoints / "checkpoint.pt").exists() and not job.model_dir.exists()

    resumed = job.run()
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "resuming from" in resumed.stdout and ": epoch 2, " in resumed.stdout
    assert "epoch 1/3" not in resumed.stdout  # the finished epoch was not trained again
    assert (job.output / "success").exists() and not (job.output / "failure").exists()

    # Same epochs, same numbers. Augmentation is seeded per (seed, epoch, image) and batches
    # per (seed, epoch), so the resumed run sees exactly the same data in the same order; the
    # only freedom left is float summation order, hence a tight tolerance instead of equality.
    got, want = _history(job), _history(reference)
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want] == [1, 2, 3]
    for row_got, row_want in zip(got, want, strict=True):
        for key in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr"):
            assert abs(row_got[key] - row_want[key]) <= 1e-4 * max(1.0, abs(row_want[key])), key
    weights_got = torch.load(job.model_dir / WEIGHTS_FILE, weights_only=True)
    weights_want = torch.load(reference.model_dir / WEIGHTS_FILE, weights_only=True)
    for name, tensor in weights_want.items():
        assert torch.allclose(weights_got[name].float(), tensor.float(), atol=1e-4, rtol=1e-3), name
