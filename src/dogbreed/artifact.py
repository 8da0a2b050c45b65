"""The model artifact: what the training job writes to ``/opt/ml/model`` and the server loads.

Two files, nothing pickled:

- ``model.pt``: the model's state dict (tensors only, loaded with ``weights_only=True``);
- ``model.json``: :class:`ModelSpec`, all a server needs (classes, image size, normalisation,
  architecture) plus the job's final metrics and hyperparameters for provenance.

``load_artifact`` also accepts a ``model.tar.gz`` (as SageMaker stores it in S3). Reading the
spec needs no torch (the slim server reads it); torch is imported where weights are read or saved.
Every field of ``model.json`` is checked when it is read (:func:`check_spec`): a wrong type or a
value out of range is an :class:`ArtifactError` naming the field, never a crash later.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogbreed.archives import MODEL_ARCHIVE, ArchiveError, extract_to_temporary
from dogbreed.atomic import write_atomically
from dogbreed.contract import ARCHITECTURE

if TYPE_CHECKING:
    import torch
    from torch import nn

WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model.json"
#: The ONNX models the export adds (dogbreed.export) and the slim server serves.
ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
FORMAT_VERSION = 1
#: The image sizes the trainer accepts (``image_size`` in :mod:`dogbreed.hyperparams`): a spec
#: outside them was not written by it (at 1,000,000 px a server's warm-up batch needs TiBs).
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024
#: A training job's model.json is a few KB; a larger one is not ours.
MAX_SPEC_BYTES = 1024 * 1024


class ArtifactError(ValueError):
    """A model directory or tarball is missing files or holds inconsistent ones."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the model and preprocess its inputs."""

    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    architecture: str = ARCHITECTURE
    metrics: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    #: What :mod:`dogbreed.export` shipped: ``files`` (ONNX files beside model.pt) and its checks.
    onnx: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_json(cls, text: str, source: str = SPEC_FILE) -> ModelSpec:
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
            raise ArtifactError(f"{source} is not a valid model spec: {exc}") from exc
        return cls(**check_spec(raw, source))


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened: a hostile value must not flood the log."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _channels(low_open: bool) -> Callable[[Any], str | None]:
    """3 numbers in [0, 1] (``(0, 1]`` when ``low_open``): pixels are scaled to [0, 1] first."""
    expected = f"3 finite numbers (one per RGB channel) in {'(' if low_open else '['}0, 1]"

    def check(value: Any) -> str | None:
        ok = isinstance(value, list) and len(value) == 3
        for item in value if ok else []:
            ok = ok and _is_number(item) and math.isfinite(item) and 0 <= item <= 1
            ok = ok and not (low_open and item == 0)
        return None if ok else expected

    return check


def _class_names(value: Any) -> str | None:
    expected = "a non-empty list of distinct, non-empty strings (one per model output)"
    if not isinstance(value, list) or not value:
        return expected
    for name in value:
        if not isinstance(name, str) or not name.strip():
            return f"{expected}; {_shown(name)} is not one"
    seen: set[str] = set()
    for name in value:
        if name in seen:
            return f"{expected}; {_shown(name)} appears twice"
        seen.add(name)
    return None


def _mapping(values: Callable[[Any], bool], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and values(v) for k, v in value.items()
        )
        return None if ok else f"an object of {what}"

    return check


#: Each field's check: None when the value is fine, else what is expected.
SPEC_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "format_version": lambda v: (
        None
        if _is_int(v) and 1 <= v <= FORMAT_VERSION
        else f"an integer from 1 to {FORMAT_VERSION}"
    ),
    "architecture": lambda v: None if v == ARCHITECTURE else repr(ARCHITECTURE),
    "class_names": _class_names,
    "image_size": lambda v: (
        None
        if _is_int(v) and MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE
        else f"an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (what the trainer accepts)"
    ),
    "mean": _channels(low_open=False),
    "std": _channels(low_open=True),
    "metrics": _mapping(_is_number, "numbers"),
    "hyperparameters": _mapping(lambda v: True, "values"),
    "onnx": _mapping(lambda v: True, "values"),
}


def check_spec(raw: Any, source: str = SPEC_FILE) -> dict[str, Any]:
    """``raw`` (parsed model.json) when every field has the type and range :class:`ModelSpec`
    needs; else an :class:`ArtifactError` naming the field, its value and what is expected."""
    invalid = f"{source} is not a valid model spec:"
    if not isinstance(raw, dict):
        raise ArtifactError(f"{invalid} it holds {_shown(raw)}, not a JSON object")
    version = raw.get("format_version", FORMAT_VERSION)
    if _is_int(version) and version > FORMAT_VERSION:
        raise ArtifactError(
            f"{invalid} format_version {version} is newer than this code (it reads up to "
            f"{FORMAT_VERSION}): upgrade dogbreed"
        )
    known = [f.name for f in fields(ModelSpec)]
    unknown = sorted(str(name) for name in raw if name not in known)
    if unknown:
        raise ArtifactError(
            f"{invalid} unknown field(s) {_shown(unknown)}; expected only {', '.join(known)}"
        )
    required = [
        f.name for f in fields(ModelSpec) if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [name for name in required if name not in raw]
    if missing:
        raise ArtifactError(f"{invalid} missing field(s) {', '.join(missing)}")
    for name, value in raw.items():
        expected = SPEC_CHECKS[name](value)
        if expected is not None:
            raise ArtifactError(f"{invalid} {name} is {_shown(value)}; expected {expected}")
    return raw


def save_artifact(model_dir: Path, model: nn.Module, spec: ModelSpec) -> None:
    """Write ``model.pt`` and ``model.json`` atomically (weights first, spec last)."""
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomically(model_dir / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    save_spec(model_dir, spec)


def save_spec(model_dir: Path, spec: ModelSpec) -> None:
    """Write ``model.json`` atomically, once it passes the checks :func:`load_spec` makes."""
    raw = check_spec(asdict(spec), str(model_dir / SPEC_FILE))
    text = json.dumps(raw, indent=2, sort_keys=True)
    write_atomically(model_dir / SPEC_FILE, lambda tmp: tmp.write_text(text + "\n"))


def _extract_tarball(tarball: Path) -> Path:
    """Extract the regular files of ``tarball`` into a new temporary folder, under the bounds of
    :mod:`dogbreed.archives` (caps checked from the headers before anything is written, sparse
    members refused; links, devices and paths that would leave the folder skipped).

    The folder is removed on failure, and when this process exits (not when a fork of it does:
    the server's workers load from the folder its master extracted).
    """
    try:
        return extract_to_temporary(tarball, prefix="dogbreed-model-", limits=MODEL_ARCHIVE)
    except ArchiveError as exc:
        raise ArtifactError(f"cannot extract {tarball}: {exc}") from exc


def resolve_model_dir(path: Path) -> Path:
    """A directory holding the artifact; a ``.tar.gz`` (or a dir holding only one) is extracted,
    into a folder removed when this process exits. A path this user may not look into (a
    folder mounted 0700 for a server running unprivileged) is an ArtifactError naming it."""
    try:
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            return _extract_tarball(path)
        if path.is_dir() and not (path / SPEC_FILE).exists() and (path / "model.tar.gz").exists():
            return _extract_tarball(path / "model.tar.gz")
    except PermissionError as exc:
        raise unreadable(Path(exc.filename or path), exc) from None
    return path


def unreadable(path: Path, exc: OSError) -> ArtifactError:
    """An ArtifactError naming the file, its mode and owner, and who tried to read it."""
    try:
        info = path.stat()
        found = f"mode {info.st_mode & 0o777:04o}, owner uid {info.st_uid}"
    except OSError:
        found = "not statable"
    return ArtifactError(
        f"cannot read {path} ({found}) as uid {os.getuid()}: {exc.strerror}; make the model "
        "files readable by all (chmod a+r), as the training job writes them"
    )


def read_model_file(path: Path) -> bytes:
    """The bytes of one artifact file, or an ArtifactError that says why it cannot be read."""
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise unreadable(path, exc) from None


def load_spec(model_dir: Path) -> ModelSpec:
    """``model_dir``'s model.json, checked field by field (:func:`check_spec`)."""
    spec_path = model_dir / SPEC_FILE
    if not spec_path.is_file():
        raise ArtifactError(f"no {SPEC_FILE} in {model_dir}: is this a dogbreed model directory?")
    size = spec_path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise ArtifactError(
            f"{spec_path} is not a valid model spec: {size} bytes, over the {MAX_SPEC_BYTES} "
            "a spec may take (a training job writes a few KB)"
        )
    try:
        text = read_model_file(spec_path).decode()
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{spec_path} is not a valid model spec: not UTF-8 ({exc})") from None
    return ModelSpec.from_json(text, source=str(spec_path))


def check_class_count(state: dict[str, torch.Tensor], spec: ModelSpec, weights: Path) -> None:
    """The head's outputs must be as many as model.json's class names: one line naming both,
    rather than load_state_dict's list of shapes."""
    shape = getattr(state.get("fc.weight"), "shape", None)
    if shape is not None and len(shape) == 2 and shape[0] != spec.num_classes:
        raise ArtifactError(
            f"{weights} does not match {SPEC_FILE}: it outputs {shape[0]} classes, but "
            f"{SPEC_FILE} names {spec.num_classes} (the two come from different training jobs)"
        )


def load_artifact(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the trained model in eval mode from a model directory or ``model.tar.gz``."""
    from dogbreed.model import WeightsError, build_model, load_state_dict_file

    model_dir = resolve_model_dir(Path(path))
    spec = load_spec(model_dir)
    if not os.access(model_dir / WEIGHTS_FILE, os.R_OK) and (model_dir / WEIGHTS_FILE).exists():
        raise unreadable(model_dir / WEIGHTS_FILE, PermissionError(13, "Permission denied"))
    try:
        state = load_state_dict_file(model_dir / WEIGHTS_FILE)
        check_class_count(state, spec, model_dir / WEIGHTS_FILE)
        model = build_model(spec.num_classes)
        model.load_state_dict(state)
    except (WeightsError, RuntimeError) as exc:
        raise ArtifactError(
            f"{model_dir / WEIGHTS_FILE} does not match {SPEC_FILE}: {exc}"
        ) from exc
    return model.to(device).eval(), spec
