"""Training checkpoints for resumption (managed spot training, SIGTERM).

One file, ``checkpoint.pt``, written atomically (temp file + ``os.replace``) so that a kill at
any instant leaves either the previous checkpoint or the new one, never half of one. It holds
only tensors and plain data (loaded back with ``weights_only=True``): model, optimizer and
scheduler state, the position (epoch, batches done in it), the best weights so far, the metric
history and the RNG states.

When a job that SageMaker named completes, :func:`remove_checkpoints` deletes its checkpoint
folder: a tuning job's trials share one checkpoint location and SageMaker copies all of it into
every trial it starts; its checkpoint sync deletes in S3 what the job deletes locally.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dogbreed.atomic import write_atomically

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainingState:
    """What a resumed job needs to continue exactly where the previous one stopped."""

    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # batches of that epoch already trained
    best_accuracy: float = -1.0
    best_epoch: int = -1
    best_weights: dict[str, torch.Tensor] | None = None
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)  # running sums of the epoch in progress


def save_checkpoint(
    directory: Path,
    state: TrainingState,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    hyperparameters: dict[str, Any],
) -> Path:
    """Write ``checkpoint.pt`` atomically; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "state": {k: v for k, v in vars(state).items() if k != "best_weights"},
        "best_weights": state.best_weights,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "hyperparameters": hyperparameters,
        "torch_rng": torch.get_rng_state(),
    }
    path = directory / CHECKPOINT_FILE
    write_atomically(path, lambda tmp: torch.save(payload, tmp))
    return path


def remove_checkpoints(directory: Path) -> None:
    """Delete a completed job's checkpoint folder (see the module docstring)."""
    shutil.rmtree(directory, ignore_errors=True)


def load_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    hyperparameters: dict[str, Any],
) -> TrainingState | None:
    """Restore from ``checkpoint.pt`` if present; None when there is none.

    A checkpoint written with different hyperparameters is refused: resuming it would
    silently train a different job.
    """
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RuntimeError(
            f"checkpoint {path} cannot be read ({exc}); delete it to start over"
        ) from exc
    if payload["hyperparameters"] != hyperparameters:
        changed = sorted(
            k for k in hyperparameters if payload["hyperparameters"].get(k) != hyperparameters[k]
        )
        raise RuntimeError(
            f"checkpoint {path} was written with different hyperparameters ({', '.join(changed)});"
            " delete it or point the job at an empty checkpoint location"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"])
    state = TrainingState(**payload["state"], best_weights=payload["best_weights"])
    log.info(
        "resuming from %s: epoch %d, %d batches done", path, state.epoch + 1, state.batches_done
    )
    return state
