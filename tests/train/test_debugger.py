"""SageMaker Debugger: a hook from SageMaker's config saves TRAIN and EVAL losses we can read back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from dogbreed.train.smdebug_hook import create_hook


def _hook_config(path: Path, tensors: Path) -> None:
    # The file SageMaker writes for a DebugHookConfig (values are strings, as SageMaker sends them).
    path.write_text(
        json.dumps(
            {
                "LocalPath": str(tensors),
                "S3OutputPath": "s3://example-bucket/debug",
                "HookParameters": {"save_interval": "1"},
                "CollectionConfigurations": [
                    {"CollectionName": "losses", "CollectionParameters": {"save_interval": "1"}},
                    {"CollectionName": "gradients", "CollectionParameters": {"save_interval": "2"}},
                    {"CollectionName": "weights", "CollectionParameters": {"save_interval": "5"}},
                ],
            }
        )
    )


def test_hook_saves_train_and_eval_losses(make_job) -> None:
    from smdebug import modes
    from smdebug.trials import create_trial

    job = make_job({"epochs": "2"})
    tensors = job.output / "tensors"
    _hook_config(job.base / "input" / "config" / "debughookconfig.json", tensors)
    result = job.run()
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"smdebug hook from {job.base}/input/config/debughookconfig.json" in result.stdout

    trial = create_trial(str(tensors))
    losses = trial.tensor_names(collection="losses")
    assert losses, trial.tensor_names()
    loss = trial.tensor(losses[0])
    train_steps = loss.steps(mode=modes.TRAIN)
    eval_steps = loss.steps(mode=modes.EVAL)
    # 40 training images in batches of 8: 5 steps an epoch, every step saved.
    assert len(train_steps) == 10
    assert len(eval_steps) >= 4  # valid (2 batches) x 2 epochs, plus the test pass
    for step in train_steps:
        assert loss.value(step, mode=modes.TRAIN) > 0
    for step in eval_steps:
        assert loss.value(step, mode=modes.EVAL) > 0
    gradients = trial.tensor_names(collection="gradients")
    assert any("conv1.weight" in name for name in gradients)
    assert trial.tensor(gradients[0]).steps(mode=modes.TRAIN) == train_steps[::2]


def test_training_without_a_hook_config_saves_nothing(make_job) -> None:
    job = make_job({"epochs": "1"})
    result = job.run()
    assert result.returncode == 0
    assert "no hook config at" in result.stdout
    assert not (job.output / "tensors").exists()


def test_without_smdebug_the_hook_is_off_and_says_why(tmp_path: Path, monkeypatch, caplog) -> None:
    config = tmp_path / "debughookconfig.json"
    _hook_config(config, tmp_path / "tensors")
    monkeypatch.setitem(sys.modules, "smdebug", None)  # import smdebug now raises ImportError
    with caplog.at_level("WARNING"):
        hook = create_hook(config)
    assert "smdebug cannot be imported" in caplog.text
    hook.register(torch.nn.Linear(2, 2), torch.nn.MSELoss())  # every call is a harmless no-op
    hook.train()
    hook.eval()
    hook.close()
