"""The metric line format round-trips through its regexes; the bundled sample is well formed."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dogbreed.metrics import METRIC_NAMES, format_metric_line, metric_definitions, parse_metric_line
from dogbreed.train.sample_data import BREEDS, SPLIT_SIZES


def test_every_metric_round_trips_through_its_regex() -> None:
    values = {key: 0.1234567 * (n + 1) for n, key in enumerate(METRIC_NAMES)}
    values["epoch"] = 12
    line = format_metric_line(values)
    parsed = parse_metric_line("2026-11-24 12:00:00 algo-1 " + line)  # as CloudWatch shows it
    assert parsed == {METRIC_NAMES[k]: round(v, 6) for k, v in values.items()}


def test_keys_never_match_inside_other_keys() -> None:
    parsed = parse_metric_line(format_metric_line({"train_loss": 2.5, "test_loss": 0.5}))
    assert parsed == {"train:loss": 2.5, "test:loss": 0.5}
    assert "valid:loss" not in parsed


def test_other_lines_and_non_finite_values_are_not_metrics() -> None:
    assert parse_metric_line("epoch 1/3 step 2/10 loss 0.5 acc 0.1") == {}
    assert parse_metric_line(format_metric_line({"valid_loss": float("nan")})) == {}
    with pytest.raises(ValueError, match="unknown metric 'valid_f1'"):
        format_metric_line({"valid_f1": 0.5})


def test_definitions_are_what_sagemaker_accepts() -> None:
    definitions = metric_definitions()
    assert len(definitions) == len(METRIC_NAMES) <= 40  # SageMaker's limit per job
    for definition in definitions:
        assert set(definition) == {"Name", "Regex"} and len(definition["Regex"]) <= 500


def test_sample_has_dogimages_layout_and_real_jpegs(sample_dir: Path) -> None:
    for split, count in SPLIT_SIZES.items():
        folders = sorted(p.name for p in (sample_dir / split).iterdir())
        assert folders == [f"{i + 1:03d}.{b}" for i, b in enumerate(BREEDS)]
        for folder in folders:
            files = sorted((sample_dir / split / folder).iterdir())
            assert len(files) == count
            with Image.open(files[0]) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
