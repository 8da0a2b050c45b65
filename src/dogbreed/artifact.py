"""The model artifact: what the training job writes to ``/opt/ml/model`` and the server loads.

Two files, nothing pickled:

- ``model.pt``: the model's state dict (tensors only, loaded with ``weights_only=True``);
- ``model.json``: :class:`ModelSpec`, all a server needs (classes, image size, normalisation,
  architecture) plus the job's final metrics and hyperparameters for provenance.

``load_artifact`` also accepts a ``model.tar.gz`` (as SageMaker stores it in S3). Reading the
spec needs no torch (the slim server reads it); torch is imported where weights are read or saved.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
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
            spec = cls(**raw)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ArtifactError(f"{source} is not a valid model spec: {exc}") from exc
        if spec.architecture != ARCHITECTURE:
            raise ArtifactError(
                f"{source}: architecture {spec.architecture!r} is not {ARCHITECTURE}"
            )
        if spec.format_version > FORMAT_VERSION:
            raise ArtifactError(
                f"{source}: format_version {spec.format_version} is newer than this code"
            )
        if not spec.class_names or len(spec.mean) != 3 or len(spec.std) != 3:
            raise ArtifactError(f"{source}: needs class_names and 3-channel mean/std")
        return spec


def save_artifact(model_dir: Path, model: nn.Module, spec: ModelSpec) -> None:
    """Write ``model.pt`` and ``model.json`` atomically (weights first, spec last)."""
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomically(model_dir / WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    save_spec(model_dir, spec)


def save_spec(model_dir: Path, spec: ModelSpec) -> None:
    """Write ``model.json`` atomically."""
    text = json.dumps(asdict(spec), indent=2, sort_keys=True)
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
    into a folder removed when this process exits."""
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return _extract_tarball(path)
    if path.is_dir() and not (path / SPEC_FILE).exists() and (path / "model.tar.gz").exists():
        return _extract_tarball(path / "model.tar.gz")
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
    spec_path = model_dir / SPEC_FILE
    if not spec_path.is_file():
        raise ArtifactError(f"no {SPEC_FILE} in {model_dir}: is this a dogbreed model directory?")
    return ModelSpec.from_json(read_model_file(spec_path).decode(), source=str(spec_path))


def load_artifact(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild the trained model in eval mode from a model directory or ``model.tar.gz``."""
    from dogbreed.model import WeightsError, build_model, load_state_dict_file

    model_dir = resolve_model_dir(Path(path))
    spec = load_spec(model_dir)
    if not os.access(model_dir / WEIGHTS_FILE, os.R_OK) and (model_dir / WEIGHTS_FILE).exists():
        raise unreadable(model_dir / WEIGHTS_FILE, PermissionError(13, "Permission denied"))
    try:
        state = load_state_dict_file(model_dir / WEIGHTS_FILE)
        model = build_model(spec.num_classes)
        model.load_state_dict(state)
    except (WeightsError, RuntimeError) as exc:
        raise ArtifactError(
            f"{model_dir / WEIGHTS_FILE} does not match {SPEC_FILE}: {exc}"
        ) from exc
    return model.to(device).eval(), spec
