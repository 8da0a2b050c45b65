"""What each tuning strategy needs beyond its ranges, checked before the request is sent.

- Bayesian, Random: any ranges; 12 jobs unless told; early stopping as asked.
- Hyperband: ``epochs`` is its resource, not a range. The epochs range's MIN and MAX become
  ``MinResource`` and ``MaxResource``; every trial runs with the static ``epochs=MAX`` and
  Hyperband stops the weaker ones after MIN epochs or more. Its own early stopping replaces
  SageMaker's (``TrainingJobEarlyStoppingType`` must be ``Off``).
- Grid: categorical ranges only; it runs every combination once, so ``MaxNumberOfTrainingJobs``
  is the number of combinations (AWS refuses any other value).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.training.ranges import Range

DEFAULT_MAX_JOBS = 12
HYPERBAND_RESOURCE = "epochs"


@dataclass(frozen=True)
class StrategyPlan:
    """The ranges a strategy searches, the static hyperparameters it adds, and its config fields."""

    ranges: tuple[Range, ...]
    max_jobs: int
    static: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def plan(
    strategy: str, ranges: Sequence[Range], max_jobs: int | None, early_stopping: bool
) -> StrategyPlan:
    """The plan for ``strategy``; a LaunchError says what it cannot take and what to give."""
    if strategy == "Hyperband":
        return _hyperband(ranges, max_jobs)
    if strategy == "Grid":
        return _grid(ranges, max_jobs, early_stopping)
    stopping = {"TrainingJobEarlyStoppingType": "Auto" if early_stopping else "Off"}
    return StrategyPlan(tuple(ranges), max_jobs or DEFAULT_MAX_JOBS, config=stopping)


def _hyperband(ranges: Sequence[Range], max_jobs: int | None) -> StrategyPlan:
    resource = next((r for r in ranges if r.name == HYPERBAND_RESOURCE), None)
    if resource is None or resource.kind != "integer":
        raise LaunchError(
            "Hyperband needs epochs as its resource: give an integer range "
            "(--range epochs=integer:MIN:MAX; MIN and MAX become MinResource and MaxResource)"
        )
    low, high = (int(float(v)) for v in resource.values)
    return StrategyPlan(
        ranges=tuple(r for r in ranges if r is not resource),
        max_jobs=max_jobs or DEFAULT_MAX_JOBS,
        static={HYPERBAND_RESOURCE: str(high)},
        config={
            "StrategyConfig": {
                "HyperbandStrategyConfig": {"MinResource": low, "MaxResource": high}
            },
            "TrainingJobEarlyStoppingType": "Off",
        },
    )


def _grid(ranges: Sequence[Range], max_jobs: int | None, early_stopping: bool) -> StrategyPlan:
    other = [f"{r.name} ({r.kind})" for r in ranges if r.kind != "categorical"]
    if other:
        raise LaunchError(
            f"Grid takes only categorical ranges; not {', '.join(other)}: give categories "
            "(e.g. --range lr=categorical:0.001,0.01,0.1) or drop a default (--no-range NAME)"
        )
    combinations = math.prod(len(r.values) for r in ranges)
    if max_jobs is not None and max_jobs != combinations:
        raise LaunchError(
            f"Grid runs every combination once: {combinations} jobs; drop --max-jobs or give "
            f"--max-jobs {combinations} (got {max_jobs})"
        )
    stopping = {"TrainingJobEarlyStoppingType": "Auto" if early_stopping else "Off"}
    return StrategyPlan(tuple(ranges), combinations, config=stopping)
