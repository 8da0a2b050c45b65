"""Optimizer and learning-rate schedule from the hyperparameters (tables, not if-chains)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from dogbreed.hyperparams import Hyperparameters

OptimizerFactory = Callable[[Iterable[nn.Parameter], Hyperparameters], torch.optim.Optimizer]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": lambda p, hp: torch.optim.SGD(
        p, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=hp.momentum > 0
    ),
    "adam": lambda p, hp: torch.optim.Adam(
        p, lr=hp.lr, betas=(hp.momentum, 0.999), weight_decay=hp.weight_decay
    ),
    "adamw": lambda p, hp: torch.optim.AdamW(
        p, lr=hp.lr, betas=(hp.momentum, 0.999), weight_decay=hp.weight_decay
    ),
}

# Each maps (epoch after warm-up, epochs after warm-up) to a factor of the base lr.
SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "cosine": lambda e, n: 0.5 * (1 + math.cos(math.pi * e / max(1, n))),
    "step": lambda e, n: 0.1 ** (3 * e // max(1, n)),
    "none": lambda e, n: 1.0,
}


def build_optimizer(model: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS[hp.optimizer](params, hp)


def build_scheduler(
    optimizer: torch.optim.Optimizer, hp: Hyperparameters
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch schedule: linear warm-up, then the chosen decay."""
    schedule = SCHEDULES[hp.lr_scheduler]
    decay_epochs = hp.epochs - hp.warmup_epochs

    def factor(epoch: int) -> float:
        if epoch < hp.warmup_epochs:
            return (epoch + 1) / (hp.warmup_epochs + 1)
        return schedule(epoch - hp.warmup_epochs, decay_epochs)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
