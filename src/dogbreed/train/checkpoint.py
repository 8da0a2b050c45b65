"""Training checkpoints for resumption (managed spot training, SIGTERM).

One file, ``checkpoint.pt``, written atomically (temp file + ``os.replace``) so that a kill at
any instant leaves either the previous checkpoint or the new one, never half of one. It holds
only tensors and plain data (loaded back with ``weights_only=True``): model, optimizer and
scheduler state, the position (epoch, batches done in it), the best weights so far, the metric
history and the RNG states. A file that is not such a checkpoint (another tool's, or another
job's) is a :class:`CheckpointError` naming what is missing or does not fit.

When a job that SageMaker named completes, :func:`remove_checkpoints` deletes its checkpoint
folder: a tuning job's trials share one checkpoint location and SageMaker copies all of it into
every trial it starts; its checkpoint sync deletes in S3 what the job deletes locally.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from dogbreed.atomic import write_atomically

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
#: What :func:`save_checkpoint` writes: each entry's name, and the types it may have.
PAYLOAD: dict[str, tuple[type, ...]] = {
    "state": (dict,),
    "best_weights": (dict, type(None)),
    "model": (dict,),
    "optimizer": (dict,),
    "scheduler": (dict,),
    "hyperparameters": (dict,),
    "torch_rng": (torch.Tensor,),
}
START_OVER = "delete it or point the job at an empty checkpoint location"


class CheckpointError(ValueError):
    """``checkpoint.pt`` cannot be resumed from: unreadable, not ours, or another job's."""


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
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({exc}); delete it to start over"
        ) from exc
    check_payload(payload, path)
    if payload["hyperparameters"] != hyperparameters:
        changed = sorted(
            k for k in hyperparameters if payload["hyperparameters"].get(k) != hyperparameters[k]
        )
        raise CheckpointError(
            f"checkpoint {path} was written with different hyperparameters ({', '.join(changed)});"
            f" {START_OVER}"
        )
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit this job's model, optimizer or scheduler "
            f"({type(exc).__name__}: {_short(str(exc))}); {START_OVER}"
        ) from exc
    state = TrainingState(**payload["state"], best_weights=payload["best_weights"])
    log.info(
        "resuming from %s: epoch %d, %d batches done", path, state.epoch + 1, state.batches_done
    )
    return state


def _short(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters of it."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}..."


def _names(names: list[str], count: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:count])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > count else shown


#: The types of :class:`TrainingState`'s fields in a checkpoint (bool is refused where int is).
STATE_TYPES: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "batches_done": (int,),
    "best_accuracy": (int, float),
    "best_epoch": (int,),
    "epochs_without_improvement": (int,),
    "history": (list,),
    "partial": (dict,),
}


def check_payload(payload: Any, path: Path) -> None:
    """A :class:`CheckpointError` unless ``payload`` has what :func:`save_checkpoint` writes."""
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(payload).__name__}, not a dogbreed checkpoint; "
            f"{START_OVER}"
        )
    missing = [key for key in PAYLOAD if key not in payload]
    if missing:
        found = sorted(str(key) for key in payload)
        raise CheckpointError(
            f"checkpoint {path} is not a dogbreed checkpoint: it lacks {', '.join(missing)} "
            f"(it holds {_names(found) or 'nothing'}); {START_OVER}"
        )
    wrong = [
        f"{key} is a {type(payload[key]).__name__} (expected {' or '.join(t.__name__ for t in types)})"
        for key, types in PAYLOAD.items()
        if not isinstance(payload[key], types)
    ]
    state = payload["state"]
    if not wrong:
        expected = [f.name for f in fields(TrainingState) if f.name != "best_weights"]
        lacking = [name for name in expected if name not in state]
        extra = sorted(str(name) for name in state if name not in expected)
        wrong += [f"state lacks {', '.join(lacking)}"] if lacking else []
        wrong += [f"state has unknown {_names(extra)}"] if extra else []
        wrong += [
            f"state.{name} is {_short(repr(state[name]), 40)}"
            for name, types in STATE_TYPES.items()
            if name in state
            and (not isinstance(state[name], types) or isinstance(state[name], bool))
        ]
    if wrong:
        raise CheckpointError(
            f"checkpoint {path} is not a dogbreed checkpoint: {'; '.join(wrong)}; {START_OVER}"
        )
