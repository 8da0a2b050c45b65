"""The reference tables in docs/training.md cannot drift from the code they describe."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from dogbreed.hyperparams import PARSERS, Hyperparameters, cli_name
from dogbreed.metrics import METRIC_NAMES

DOC = Path(__file__).parents[2] / "docs" / "training.md"
ROW = re.compile(r"^\| `([a-z0-9-]+)` \| ([^|]+) \|", re.MULTILINE)


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_the_hyperparameter_table_lists_every_field_with_its_default() -> None:
    rows = dict(ROW.findall(_section("Hyperparameters")))
    expected = {cli_name(f.name): f for f in fields(Hyperparameters)}
    assert sorted(rows) == sorted(expected), "rows and Hyperparameters fields differ"
    for name, field in expected.items():
        documented = PARSERS[field.name](name, rows[name].strip())
        assert documented == field.default, (
            f"{name}: docs say {rows[name]!r}, code {field.default!r}"
        )


def test_the_metrics_table_names_every_metric_and_its_sagemaker_name() -> None:
    section = _section("Log lines and metrics")
    for key, name in METRIC_NAMES.items():
        row = next((line for line in section.splitlines() if f"`{key}`" in line), None)
        assert row is not None and f"`{name}`" in row, f"{key} -> {name} not in the table"
