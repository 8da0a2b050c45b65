"""Weights and checkpoints from another tool are refused by name (issue 23, finding 5).

On da1db7c a ``checkpoint.pt`` written by another tool where the job resumes from failed the job
with ``unexpected KeyError: 'hyperparameters'`` (exit 1, a traceback), and a ``pretrained`` file
whose keys are not parameter names with ``unexpected AttributeError``. Now each is a
``CheckpointError`` or ``WeightsError`` in ``output/failure`` that names what is missing or wrong,
and the job exits 2, as for the other failures it recognises.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dogbreed.model import WeightsError, build_model, load_state_dict_file
from dogbreed.train.checkpoint import (
    CHECKPOINT_FILE,
    PAYLOAD,
    STATE_TYPES,
    CheckpointError,
    TrainingState,
    load_checkpoint,
    save_checkpoint,
)

HP = {"epochs": "1", "workers": "0"}


def tiny() -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1)


def ours(folder: Path) -> dict[str, Any]:
    """A checkpoint as :func:`save_checkpoint` writes it (of a tiny model), loaded back."""
    model, optimizer, scheduler = tiny()
    path = save_checkpoint(folder, TrainingState(epoch=1), model, optimizer, scheduler, {"lr": 1})
    return torch.load(path, weights_only=True)


def test_the_checks_know_every_field(tmp_path: Path) -> None:
    assert set(STATE_TYPES) == {f.name for f in fields(TrainingState)} - {"best_weights"}
    assert set(PAYLOAD) == set(ours(tmp_path))


def test_our_own_checkpoint_still_loads(tmp_path: Path) -> None:
    ours(tmp_path)
    state = load_checkpoint(tmp_path, *tiny(), {"lr": 1})
    assert state is not None and state.epoch == 1


def _foreign(folder: Path) -> dict[str, Any]:
    payload = ours(folder)
    return {
        "another tool's {'state_dict': ...}": {"state_dict": nn.Linear(4, 3).state_dict()},
        "a plain state dict": nn.Linear(4, 3).state_dict(),
        "a tensor": torch.zeros(3),
        "a list": [1, 2],
        "a model that is a list": {**payload, "model": [torch.zeros(3)]},
        "a state without epoch": {
            **payload,
            "state": {k: v for k, v in payload["state"].items() if k != "epoch"},
        },
        "a state with a string epoch": {**payload, "state": {**payload["state"], "epoch": "1"}},
        "a model of another size": {**payload, "model": nn.Linear(4, 5).state_dict()},
        "an optimizer of another model": {
            **payload,
            "optimizer": torch.optim.SGD(
                nn.Linear(4, 3, bias=False).parameters(), 0.1
            ).state_dict(),
        },
    }


FOREIGN = {
    "another tool's {'state_dict': ...}": r"is not a dogbreed checkpoint: it lacks state, "
    r"best_weights, model, optimizer, scheduler, hyperparameters, torch_rng \(it holds "
    r"'state_dict'\)",
    "a plain state dict": r"it lacks state, .*\(it holds 'bias', 'weight'\)",
    "a tensor": r"holds a Tensor, not a dogbreed checkpoint",
    "a list": r"holds a list, not a dogbreed checkpoint",
    "a model that is a list": r"model is a list \(expected dict\)",
    "a state without epoch": r"state lacks epoch",
    "a state with a string epoch": r"state\.epoch is '1'",
    "a model of another size": r"does not fit this job's model, optimizer or scheduler "
    r"\(RuntimeError: .*size mismatch",
    "an optimizer of another model": r"does not fit this job's model, optimizer or scheduler "
    r"\(ValueError: ",
}


@pytest.mark.parametrize("case", FOREIGN)
def test_a_foreign_checkpoint_names_what_is_wrong(tmp_path: Path, case: str) -> None:
    torch.save(_foreign(tmp_path / "ours")[case], tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointError, match=FOREIGN[case]) as raised:
        load_checkpoint(tmp_path, *tiny(), {"lr": 1})
    assert "delete it or point the job at an empty checkpoint location" in str(raised.value)


def test_a_job_resuming_from_another_tools_checkpoint_fails_naming_what_it_lacks(
    make_job,
) -> None:
    job = make_job(HP)
    job.checkpoints.mkdir(parents=True)
    torch.save({"state_dict": build_model(3).state_dict()}, job.checkpoints / CHECKPOINT_FILE)
    result = job.run(timeout=120)
    assert "ExitCode 2" in result.stdout, result.stdout[-3000:]  # the toolkit's own exit is 1
    failure = job.failure()
    assert failure.startswith(
        f"CheckpointError: checkpoint {job.checkpoints / CHECKPOINT_FILE} is not a dogbreed "
        "checkpoint: it lacks state, best_weights, model, optimizer, scheduler, hyperparameters,"
        " torch_rng (it holds 'state_dict')"
    ), failure
    assert "Traceback" not in result.stdout
    assert not job.model_dir.exists() or not any(job.model_dir.iterdir())


def test_weights_whose_keys_are_not_parameter_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "numbered.pt"
    torch.save(dict(enumerate(build_model(3).state_dict().values())), path)
    with pytest.raises(
        WeightsError,
        match=r"holds a dict, not a state dict of tensors \(parameter name: tensor\); "
        r"122 entries are not: \['0: Tensor', '1: Tensor', '2: Tensor'\] ...",
    ):
        load_state_dict_file(path)


def test_a_job_given_weights_of_another_layout_fails_naming_them(make_job, tmp_path) -> None:
    job = make_job({**HP, "pretrained": "true", "trainable": "head"})
    channel = job.add_channel("pretrained")
    torch.save(dict(enumerate(build_model(3).state_dict().values())), channel / "weights.pt")
    result = job.run(timeout=120)
    assert "ExitCode 2" in result.stdout, result.stdout[-3000:]  # the toolkit's own exit is 1
    assert job.failure().startswith(
        f"WeightsError: {channel / 'weights.pt'} holds a dict, not a state dict of tensors"
    ), job.failure()
    assert "Traceback" not in result.stdout
