"""ResNet18 with a new classification head, and where its ImageNet weights come from."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from dogbreed.contract import STAGES


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit ResNet18."""


def imagenet_weights_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet18 weights in the torch hub cache."""
    filename = Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True``; unwrap ``{"model": ...}``/``{"state_dict": ...}``."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"weights file not found: {path}") from exc
    except Exception as exc:  # pickle errors, zip errors, disallowed globals...
        raise WeightsError(
            f"cannot load {path} as a torch state dict with weights_only=True: {exc}"
        ) from exc
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors")
    odd = [
        f"{key!r}: {type(value).__name__}"[:80]
        for key, value in loaded.items()
        if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    ]
    if odd:
        raise WeightsError(
            f"{path} holds a dict, not a state dict of tensors (parameter name: tensor); "
            f"{len(odd)} entries are not: {_first(odd)}"
        )
    return loaded


def _first(names: list[str], count: int = 3) -> str:
    return f"{names[:count]}{' ...' if len(names) > count else ''}" if names else "none"


def build_model(num_classes: int, backbone: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """ResNet18 whose backbone takes ``backbone`` weights (any ``fc.*`` ignored) and a fresh head."""
    model = resnet18(weights=None)
    if backbone is not None:
        body = {k: v for k, v in backbone.items() if not k.startswith("fc.")}
        expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("fc.")}
        missing = sorted(set(expected) - set(body))
        unexpected = sorted(set(body) - set(expected))
        misshapen = sorted(k for k in set(body) & set(expected) if body[k].shape != expected[k])
        if missing or unexpected or misshapen:
            raise WeightsError(
                "backbone weights do not fit ResNet18: "
                f"missing {_first(missing)}, unexpected {_first(unexpected)}, "
                f"wrong shape {_first(misshapen)}"
            )
        model.load_state_dict(body, strict=False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def set_trainable(model: nn.Module, trainable: str) -> None:
    """Freeze everything before stage ``trainable`` (one of :data:`STAGES`); the head always trains."""
    if trainable not in STAGES:
        raise ValueError(f"trainable must be one of {', '.join(STAGES)}; got {trainable!r}")
    first = STAGES.index(trainable)
    trained_prefixes = ("fc.",) + tuple(f"{stage}." for stage in STAGES[max(first, 1) : -1])
    for name, param in model.named_parameters():
        param.requires_grad = trainable == "all" or name.startswith(trained_prefixes)


def backbone_frozen_bn(model: nn.Module, trainable: str) -> list[nn.Module]:
    """BatchNorm layers inside frozen stages: keep them in eval mode so their statistics hold."""
    if trainable == "all":
        return []
    frozen = {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}
    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d) and name.split(".")[0] in frozen
    ]
