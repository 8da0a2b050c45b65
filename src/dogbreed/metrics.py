"""THE metric line format, and the regexes that parse it (SageMaker ``MetricDefinitions``).

The trainer prints, once per epoch and once for the final test evaluation, one line::

    [metrics] epoch=3 train_loss=0.412300 train_accuracy=0.871000 valid_loss=0.530100 valid_accuracy=0.812500

Every value is ``name=number``; names are ``<split>_<measure>`` plus ``epoch``. SageMaker
reads metrics from log lines with one regex per metric: :func:`metric_definitions` builds those
from :data:`METRIC_NAMES`, and :func:`parse_metric_line` applies the very same regexes, so the
launcher and the trainer can never disagree about the format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

PREFIX = "[metrics]"
NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"

#: Metric keys as they appear in the line, mapped to the name SageMaker shows.
METRIC_NAMES: dict[str, str] = {
    "epoch": "epoch",
    "train_loss": "train:loss",
    "train_accuracy": "train:accuracy",
    "valid_loss": "valid:loss",
    "valid_accuracy": "valid:accuracy",
    "test_loss": "test:loss",
    "test_accuracy": "test:accuracy",
    "images_per_sec": "train:images_per_sec",
    "lr": "train:lr",
}

#: The hyperparameter tuning objective: maximise validation accuracy.
OBJECTIVE_METRIC = METRIC_NAMES["valid_accuracy"]
OBJECTIVE_TYPE = "Maximize"


def _regex(key: str) -> str:
    # The key must follow a space so that "valid_loss" cannot match inside another key.
    return re.escape(PREFIX) + r".* " + re.escape(key) + "=(" + NUMBER + ")"


def format_metric_line(values: Mapping[str, float | int]) -> str:
    """Render one metric line; unknown keys and non-finite values are rejected."""
    parts = [PREFIX]
    for key, value in values.items():
        if key not in METRIC_NAMES:
            raise ValueError(f"unknown metric {key!r}; known: {', '.join(METRIC_NAMES)}")
        if isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={value}")
        elif math.isfinite(float(value)):
            parts.append(f"{key}={float(value):.6f}")
        else:
            parts.append(f"{key}=nan")  # printed, but never matched: HPO skips it
    return " ".join(parts)


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker ``MetricDefinitions`` for every metric the trainer prints."""
    return [{"Name": name, "Regex": _regex(key)} for key, name in METRIC_NAMES.items()]


def parse_metric_line(line: str) -> dict[str, float]:
    """Apply the ``MetricDefinitions`` regexes to one log line, as SageMaker does.

    Returns ``{sagemaker_name: value}`` for every metric found; ``{}`` for other lines.
    """
    found: dict[str, float] = {}
    for definition in metric_definitions():
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found
