"""The model artifact: save, load from a folder or a model.tar.gz, and refuse what is wrong."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from dogbreed.artifact import (
    ArtifactError,
    ModelSpec,
    load_artifact,
    resolve_model_dir,
    save_artifact,
)
from dogbreed.model import build_model

SPEC = ModelSpec(["Beagle", "Akita", "Pug"], 64, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2])


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_artifact(tmp_path / "model", build_model(3), SPEC)
    return tmp_path / "model"


def test_round_trip_from_a_folder_and_a_tarball(model_dir: Path, tmp_path: Path) -> None:
    model, spec = load_artifact(model_dir)
    assert spec == SPEC and not model.training
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:  # SageMaker's tarball has ./-prefixed names
        for name in ("model.pt", "model.json"):
            tar.add(model_dir / name, arcname=f"./{name}")
    from_tar, spec_tar = load_artifact(tarball)
    x = torch.randn(2, 3, 64, 64)
    assert spec_tar == SPEC and torch.equal(model(x), from_tar(x))


def test_unsafe_tar_members_are_never_written(tmp_path: Path) -> None:
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        escape = tarfile.TarInfo("../escaped.txt")
        escape.size = 1
        tar.addfile(escape, io.BytesIO(b"x"))
        link = tarfile.TarInfo("model.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    folder = resolve_model_dir(tarball)
    assert list(folder.iterdir()) == [] and not (folder.parent / "escaped.txt").exists()
    with pytest.raises(ArtifactError, match="no model.json in"):
        load_artifact(tarball)


def test_weights_that_do_not_match_the_spec_are_refused(model_dir: Path) -> None:
    spec = json.loads((model_dir / "model.json").read_text())
    spec["class_names"].append("Boxer")
    (model_dir / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match=r"model.pt does not match model.json"):
        load_artifact(model_dir)


def test_a_malformed_spec_names_the_file(model_dir: Path) -> None:
    (model_dir / "model.json").write_text('{"class_names": ["a"]}')
    with pytest.raises(ArtifactError, match=r"model.json is not a valid model spec"):
        load_artifact(model_dir)
