"""Tuning ranges: ``NAME=KIND:SPEC`` parsed, checked with the trainer's own parser, and sent.

A range is written ``NAME=KIND:SPEC``::

    lr=continuous:0.001:0.1          (optionally :log / :linear / :reverselog)
    batch-size=categorical:32,64,128
    epochs=integer:2:5

Range ends and categories are checked with the trainer's own hyperparameter parser, so a
tuning job cannot launch training jobs that would fail on their first line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dogbreed.launch.errors import LaunchError

#: The seed's search space: what ``dogbreed tune`` explores unless told otherwise.
DEFAULT_RANGES = (
    "lr=continuous:0.001:0.1:log",
    "batch-size=categorical:32,64,128,256,512",
    "epochs=integer:2:5",
)
SCALING = {
    "auto": "Auto",
    "linear": "Linear",
    "log": "Logarithmic",
    "reverselog": "ReverseLogarithmic",
}


@dataclass(frozen=True)
class Range:
    name: str
    kind: str  # "continuous", "integer" or "categorical"
    values: tuple[str, ...]  # (min, max) or the categories
    scaling: str = "Auto"

    def request(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"Name": self.name, "Values": list(self.values)}
        return {
            "Name": self.name,
            "MinValue": self.values[0],
            "MaxValue": self.values[1],
            "ScalingType": self.scaling,
        }


def _check_value(name: str, raw: str) -> float | str:
    from dogbreed.hyperparams import PARSERS, HyperparameterError

    field_name = name.replace("-", "_")
    try:
        return PARSERS[field_name](name, raw)
    except HyperparameterError as error:
        raise LaunchError(f"bad tuning range: {error}") from None


def parse_range(text: str) -> Range:
    """Parse ``NAME=KIND:SPEC`` (see the module docstring)."""
    from dogbreed.hyperparams import PARSERS, cli_name

    name, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    name, kind = name.strip(), kind.strip().lower()
    field_name = name.replace("-", "_")
    if not sep or field_name not in PARSERS:
        known = ", ".join(cli_name(n) for n in PARSERS)
        raise LaunchError(f"bad tuning range {text!r}: NAME must be a hyperparameter ({known})")
    name = cli_name(field_name)
    if kind == "categorical":
        values = tuple(v.strip() for v in rest.split(",") if v.strip())
        if not values:
            raise LaunchError(
                f"bad tuning range {text!r}: give categories, e.g. {name}=categorical:a,b"
            )
        for value in values:
            _check_value(name, value)
        return Range(name, kind, values)
    if kind in ("continuous", "integer"):
        parts = [p.strip() for p in rest.split(":")]
        if len(parts) not in (2, 3):
            raise LaunchError(f"bad tuning range {text!r}: use {name}={kind}:MIN:MAX[:SCALING]")
        scaling = SCALING.get(parts[2].lower()) if len(parts) == 3 else "Auto"
        if scaling is None:
            raise LaunchError(
                f"bad tuning range {text!r}: scaling must be one of {', '.join(SCALING)}"
            )
        low, high = (_check_value(name, p) for p in parts[:2])
        if not isinstance(low, (int, float)) or not low < high:
            raise LaunchError(f"bad tuning range {text!r}: need numbers with MIN < MAX")
        if kind == "integer" and not all(float(p).is_integer() for p in parts[:2]):
            raise LaunchError(f"bad tuning range {text!r}: integer ranges need whole numbers")
        if scaling == "Logarithmic" and low <= 0:
            raise LaunchError(f"bad tuning range {text!r}: log scaling needs MIN > 0")
        if scaling == "ReverseLogarithmic" and not (low >= 0 and float(high) < 1):
            raise LaunchError(
                f"bad tuning range {text!r}: reverselog scaling needs 0 <= MIN < MAX < 1"
            )
        return Range(name, kind, (parts[0], parts[1]), scaling)
    raise LaunchError(f"bad tuning range {text!r}: KIND must be continuous, integer or categorical")


def parse_ranges(texts: Sequence[str], dropped: Sequence[str] = ()) -> list[Range]:
    """The defaults less ``dropped``, with any range the user gives replacing the default of the
    same name."""
    from dogbreed.hyperparams import cli_name

    ranges = {r.name: r for r in map(parse_range, DEFAULT_RANGES)}
    for name in dropped:
        if ranges.pop(cli_name(name.replace("-", "_")), None) is None:
            raise LaunchError(
                f"--no-range {name}: not a default range (defaults: {', '.join(ranges)})"
            )
    ranges.update({r.name: r for r in map(parse_range, texts)})
    return list(ranges.values())


def parameter_ranges(ranges: Sequence[Range]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {
        "ContinuousParameterRanges": [],
        "IntegerParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for r in ranges:
        grouped[f"{r.kind.capitalize()}ParameterRanges"].append(r.request())
    return grouped
