"""The training job's hyperparameters: parsing, defaults and validation.

SageMaker hands every hyperparameter to the program as a string (the toolkit turns
``{"batch-size": "64", "flag": "true"}`` into ``--batch-size 64 --flag True``). Every value is
checked here, before any work, and a bad one raises :class:`HyperparameterError` naming the
hyperparameter, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from dogbreed.contract import STAGES

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "step", "none")
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")


class HyperparameterError(ValueError):
    """A hyperparameter is unknown or has a value outside what is allowed."""


@dataclass(frozen=True)
class Hyperparameters:
    """Validated hyperparameters; CLI names are these field names with ``-`` for ``_``."""

    lr: float = 0.01
    batch_size: int = 32
    epochs: int = 5
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_scheduler: str = "cosine"
    warmup_epochs: int = 0
    trainable: str = "all"
    image_size: int = 224
    label_smoothing: float = 0.0
    patience: int = 0
    seed: int = 0
    workers: int = -1
    pretrained: str = "true"
    max_bad_fraction: float = 0.05
    amp: bool = True
    log_interval: int = 10
    stall_timeout: float = 180.0
    export: bool = True
    int8_max_drop: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _number(cast: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Callable:
    def parse(name: str, raw: str) -> Any:
        try:
            value = cast(raw)
        except ValueError:
            raise HyperparameterError(f"{name} must be {what}; got {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            raise HyperparameterError(f"{name} must be {what}; got {raw!r}")
        return value

    return parse


def _integer(raw: str) -> int:
    value = float(raw)  # accepts "64" and "64.0" (HPO sends integers as floats sometimes)
    if not value.is_integer():
        raise ValueError(raw)
    return int(value)


def _choice(options: Sequence[str]) -> Callable:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise HyperparameterError(f"{name} must be one of {', '.join(options)}; got {raw!r}")
        return value

    return parse


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise HyperparameterError(f"{name} must be true or false; got {raw!r}")


def _pretrained(name: str, raw: str) -> str:
    value = raw.strip()
    if value.lower() in TRUE_WORDS:
        return "true"
    if value.lower() in FALSE_WORDS:
        return "false"
    if not value:
        raise HyperparameterError(f"{name} must be true, false or a weights file path; got ''")
    return value  # a path, checked when the weights are loaded


PARSERS: dict[str, Callable[[str, str], Any]] = {
    "lr": _number(float, "a number > 0 and <= 10", lambda v: 0 < v <= 10),
    "batch_size": _number(_integer, "an integer >= 1", lambda v: v >= 1),
    "epochs": _number(_integer, "an integer >= 1", lambda v: v >= 1),
    "optimizer": _choice(OPTIMIZERS),
    "momentum": _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1),
    "weight_decay": _number(float, "a number >= 0", lambda v: v >= 0),
    "lr_scheduler": _choice(SCHEDULERS),
    "warmup_epochs": _number(_integer, "an integer >= 0", lambda v: v >= 0),
    "trainable": _choice(STAGES),
    "image_size": _number(_integer, "an integer between 32 and 1024", lambda v: 32 <= v <= 1024),
    "label_smoothing": _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1),
    "patience": _number(_integer, "an integer >= 0 (0 turns early stopping off)", lambda v: v >= 0),
    "seed": _number(_integer, "an integer >= 0", lambda v: v >= 0),
    "workers": _number(_integer, "an integer >= 0, or -1 for automatic", lambda v: v >= -1),
    "pretrained": _pretrained,
    "max_bad_fraction": _number(float, "a number in [0, 1]", lambda v: 0 <= v <= 1),
    "amp": _boolean,
    "log_interval": _number(_integer, "an integer >= 1", lambda v: v >= 1),
    "stall_timeout": _number(float, "a number of seconds in [1, 3600]", lambda v: 1 <= v <= 3600),
    "export": _boolean,
    "int8_max_drop": _number(
        float, "a number of accuracy points in [-100, 100]", lambda v: -100 <= v <= 100
    ),
}


def cli_name(field: str) -> str:
    return field.replace("_", "-")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dogbreed.train",
        description="Fine-tune ResNet18 under SageMaker's training contract.",
        allow_abbrev=False,
    )
    for field in fields(Hyperparameters):
        flags = {f"--{cli_name(field.name)}", f"--{field.name}"}
        parser.add_argument(
            *sorted(flags),
            dest=field.name,
            default=None,
            metavar="VALUE",
            help=f"default: {field.default}",
        )
    return parser


def parse_hyperparameters(argv: Sequence[str]) -> Hyperparameters:
    """Parse CLI arguments as the toolkit passes them; raise on unknown or invalid values."""
    parser = _build_parser()
    known, unknown = parser.parse_known_args(list(argv))
    if unknown:
        names = [a for a in unknown if a.startswith("-")] or unknown
        allowed = ", ".join(cli_name(f.name) for f in fields(Hyperparameters))
        raise HyperparameterError(
            f"unknown hyperparameter(s) {', '.join(names)}; allowed: {allowed}"
        )
    values = {
        name: PARSERS[name](cli_name(name), str(raw))
        for name, raw in vars(known).items()
        if raw is not None
    }
    params = Hyperparameters(**values)
    if params.warmup_epochs >= params.epochs and params.warmup_epochs:
        raise HyperparameterError(
            f"warmup-epochs must be < epochs ({params.epochs}); got {params.warmup_epochs}"
        )
    return params
