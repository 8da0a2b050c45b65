"""Backbone weights: hub cache, a `pretrained` channel, none, and wrong files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from dogbreed.model import WeightsError, build_model, imagenet_weights_path, load_state_dict_file


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A ResNet18 state dict with 1000 classes, as torchvision ships (random values here)."""
    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(state, path)
    return path, state


def test_backbone_weights_load_and_head_is_new(imagenet_like) -> None:
    path, state = imagenet_like
    model = build_model(7, load_state_dict_file(path))
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 7


def test_wrong_files_fail_clearly(tmp_path: Path) -> None:
    text = tmp_path / "weights.pt"
    text.write_text("hello")
    with pytest.raises(
        WeightsError, match="cannot load .*weights.pt as a torch state dict with weights_only=True"
    ):
        load_state_dict_file(text)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(
        WeightsError,
        match="backbone weights do not fit ResNet18: missing .*wrong shape \\[.conv1.weight.\\]",
    ):
        build_model(3, load_state_dict_file(tmp_path / "other.pt"))
    with pytest.raises(WeightsError, match="weights file not found"):
        load_state_dict_file(tmp_path / "absent.pt")


def _conv1(job) -> torch.Tensor:
    from dogbreed.train.checkpoint import CHECKPOINT_FILE

    # head-only training keeps the backbone exactly as loaded
    return torch.load(job.checkpoints / CHECKPOINT_FILE, weights_only=True)["model"]["conv1.weight"]


def test_pretrained_channel_feeds_the_backbone(make_job, imagenet_like) -> None:
    path, state = imagenet_like
    job = make_job({"pretrained": "true", "trainable": "head", "epochs": "1"})
    channel = job.add_channel("pretrained")
    (channel / path.name).write_bytes(path.read_bytes())
    result = job.run()
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"loading backbone weights from {channel / path.name}" in result.stdout
    assert torch.equal(_conv1(job), state["conv1.weight"])


def test_pretrained_true_reads_the_torch_hub_cache(make_job, imagenet_like, tmp_path: Path) -> None:
    path, state = imagenet_like
    torch_home = tmp_path / "torch-home"
    cached = torch_home / "hub" / "checkpoints" / imagenet_weights_path().name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    job = make_job({"pretrained": "true", "trainable": "head", "epochs": "1"})
    result = job.run(TORCH_HOME=str(torch_home))
    assert result.returncode == 0, result.stdout[-3000:]
    assert torch.equal(_conv1(job), state["conv1.weight"])


def test_missing_hub_weights_fail_with_what_to_do(make_job, tmp_path: Path) -> None:
    job = make_job({"pretrained": "true"})
    result = job.run(TORCH_HOME=str(tmp_path / "empty"))
    assert result.returncode == 1
    failure = job.failure()
    assert (
        "pretrained=true but the ImageNet ResNet18 weights are not in the torch hub cache"
        in failure
    )
    assert "set pretrained=false" in failure


def test_a_wrong_file_in_the_pretrained_channel_fails_the_job(make_job) -> None:
    job = make_job({"pretrained": "true"})
    channel = job.add_channel("pretrained")
    (channel / "weights.pth").write_bytes(b"PK\x03\x04 not really a zip")
    result = job.run()
    assert result.returncode == 1
    assert "WeightsError: cannot load" in job.failure() and "weights_only=True" in job.failure()
