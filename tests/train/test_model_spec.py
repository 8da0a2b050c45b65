"""``model.json`` is checked field by field when it is read (issue 23, finding 5).

On da1db7c, of the 31 bad specs below 5 were refused with an ArtifactError, 2 raised TypeError
(``format_version: "1"``: a traceback, exit 1) and 24 were accepted: ``image_size: 1000000`` (the
server's warm-up then asks for 2.7 TiB), ``std: [0, 0, 0]``, ``class_names: "abc"``, a NaN mean...
Now all 31 are an ArtifactError naming the field, its value (shortened) and what is expected;
`dogbreed-serve` and `dogbreed-export` exit 2 with it (tests/serve/test_bad_model_json.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from dogbreed.artifact import (
    MAX_IMAGE_SIZE,
    MAX_SPEC_BYTES,
    MIN_IMAGE_SIZE,
    ArtifactError,
    ModelSpec,
    load_artifact,
    load_spec,
    save_artifact,
    save_spec,
)
from dogbreed.hyperparams import HyperparameterError, parse_hyperparameters
from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD

GOOD = ModelSpec(
    class_names=["Beagle", "Akita", "Pug"],
    image_size=224,
    mean=list(IMAGENET_MEAN),
    std=list(IMAGENET_STD),
    metrics={"best_epoch": 2, "valid_accuracy": 0.5, "valid_loss": float("nan")},
    hyperparameters={"lr": 0.01, "amp": True, "pretrained": "true"},
    onnx={"files": ["model.onnx"], "int8_attempts": [{"note": "ok"}]},
)
NAN, INF = float("nan"), float("inf")

#: (field, bad value, what the message must say), each written over GOOD's model.json.
BAD: list[tuple[str, Any, str]] = [
    ("format_version", "1", "format_version is '1'; expected an integer from 1 to 1"),
    ("format_version", 1.0, "format_version is 1.0; expected an integer"),
    ("format_version", 0, "format_version is 0; expected an integer from 1 to 1"),
    ("format_version", True, "format_version is True; expected an integer"),
    ("format_version", 2, "format_version 2 is newer than this code"),
    ("image_size", 1_000_000, "image_size is 1000000; expected an integer from 32 to 1024"),
    ("image_size", -224, "image_size is -224; expected an integer from 32 to 1024"),
    ("image_size", 0, "image_size is 0; expected"),
    ("image_size", 224.5, "image_size is 224.5; expected"),
    ("image_size", "224", "image_size is '224'; expected"),
    ("image_size", None, "image_size is None; expected"),
    ("mean", [0.5, 0.5], "mean is [0.5, 0.5]; expected 3 finite numbers"),
    ("mean", [NAN, 0.5, 0.5], "mean is [nan, 0.5, 0.5]; expected 3 finite numbers"),
    ("mean", [0.5, INF, 0.5], "mean is [0.5, inf, 0.5]; expected"),
    ("mean", ["0.5", 0.5, 0.5], "mean is ['0.5', 0.5, 0.5]; expected"),
    (
        "mean",
        [123.7, 116.3, 103.5],
        "mean is [123.7, 116.3, 103.5]; expected 3 finite numbers (one per RGB channel) in [0, 1]",
    ),
    ("mean", 0.5, "mean is 0.5; expected"),
    (
        "std",
        [0, 0, 0],
        "std is [0, 0, 0]; expected 3 finite numbers (one per RGB channel) in (0, 1]",
    ),
    ("std", [0.2, -0.2, 0.2], "std is [0.2, -0.2, 0.2]; expected"),
    ("std", [0.2, 0.2, 0.2, 0.2], "std is [0.2, 0.2, 0.2, 0.2]; expected"),
    ("class_names", "abc", "class_names is 'abc'; expected a non-empty list of distinct"),
    ("class_names", [], "class_names is []; expected a non-empty list"),
    ("class_names", ["a", "b", "a"], "'a' appears twice"),
    ("class_names", ["a", "", "c"], "'' is not one"),
    ("class_names", ["a", 2, "c"], "2 is not one"),
    ("class_names", {"a": 1}, "class_names is {'a': 1}; expected"),
    ("architecture", "resnet50", "architecture is 'resnet50'; expected 'resnet18'"),
    ("metrics", {"accuracy": "high"}, "metrics is {'accuracy': 'high'}; expected an object of"),
    ("metrics", [1, 2], "metrics is [1, 2]; expected an object"),
    ("hyperparameters", "lr=0.1", "hyperparameters is 'lr=0.1'; expected an object"),
    ("onnx", ["model.onnx"], "onnx is ['model.onnx']; expected an object"),
]


def write(folder: Path, raw: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(raw))
    return folder


def test_a_spec_the_trainer_writes_loads_back(tmp_path: Path) -> None:
    save_spec(tmp_path, GOOD)
    loaded = load_spec(tmp_path)
    assert loaded.class_names == GOOD.class_names and loaded.image_size == 224
    assert loaded.metrics["best_epoch"] == 2 and loaded.onnx == GOOD.onnx


@pytest.mark.parametrize(("name", "value", "says"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_a_bad_field_is_refused_naming_it(tmp_path: Path, name: str, value: Any, says: str) -> None:
    folder = write(tmp_path, {**asdict(GOOD), name: value})
    with pytest.raises(ArtifactError) as raised:
        load_spec(folder)
    message = str(raised.value)
    assert message.startswith(f"{folder / 'model.json'} is not a valid model spec: "), message
    assert says in message, message


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ([1, 2, 3], "it holds [1, 2, 3], not a JSON object"),
        ({"class_names": ["a"]}, "missing field(s) image_size, mean, std"),
        ({**asdict(GOOD), "labels": ["a"]}, "unknown field(s) ['labels']; expected only "),
    ],
)
def test_a_spec_of_another_shape_is_refused(tmp_path: Path, raw: Any, says: str) -> None:
    with pytest.raises(ArtifactError, match="is not a valid model spec: ") as raised:
        load_spec(write(tmp_path, raw))
    assert says in str(raised.value)


def test_a_long_value_is_shortened_in_the_message(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as raised:
        load_spec(write(tmp_path, {**asdict(GOOD), "class_names": "x" * 100_000}))
    assert len(str(raised.value)) < 400 and "xxx...'" in str(raised.value)


def test_files_that_are_not_json_text_are_refused(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ArtifactError, match="is not a valid model spec: not UTF-8"):
        load_spec(tmp_path)
    (tmp_path / "model.json").write_text("[" * 100_000)
    with pytest.raises(ArtifactError, match="is not a valid model spec: "):
        load_spec(tmp_path)
    (tmp_path / "model.json").write_text(" " * (MAX_SPEC_BYTES + 1))
    with pytest.raises(ArtifactError, match=f"over the {MAX_SPEC_BYTES} a spec may take"):
        load_spec(tmp_path)


def test_the_image_size_bounds_are_the_trainers() -> None:
    for size in (MIN_IMAGE_SIZE, MAX_IMAGE_SIZE):
        assert parse_hyperparameters(["--image-size", str(size)]).image_size == size
    for size in (MIN_IMAGE_SIZE - 1, MAX_IMAGE_SIZE + 1):
        with pytest.raises(HyperparameterError, match="image-size"):
            parse_hyperparameters(["--image-size", str(size)])


def test_an_invalid_spec_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="std is \\[0, 0, 0\\]"):
        save_spec(tmp_path, replace(GOOD, std=[0, 0, 0]))
    assert not (tmp_path / "model.json").exists()


def test_class_names_must_match_the_weights(tmp_path: Path) -> None:
    """Where the model is known (model.pt), the number of names must be its number of outputs."""
    from dogbreed.model import build_model

    torch.manual_seed(0)
    save_artifact(tmp_path, build_model(3), GOOD)
    load_artifact(tmp_path)
    write(tmp_path, {**asdict(GOOD), "class_names": ["Beagle", "Akita"]})
    with pytest.raises(
        ArtifactError,
        match=r"model.pt does not match model.json: it outputs 3 classes, but model.json names 2",
    ):
        load_artifact(tmp_path)
