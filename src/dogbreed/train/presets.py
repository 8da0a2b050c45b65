"""Image transforms: the one place that defines how pixels become tensors.

Each transform is a crop to a uint8 tensor followed by :func:`normalize`. The evaluation crop is
:mod:`dogbreed.imaging`'s, which the torch-free server shares. The training job's
loaders run only the crop (:func:`train_crop`, :func:`eval_crop`), so that batches cross from
loader processes as uint8, a quarter of float32's bytes, and normalise after the transfer. The
model server imports :func:`eval_transform`, which is the same crop and the same normalisation
in one step, so serving preprocesses exactly as validation did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from PIL import Image
from torchvision.transforms import v2 as T

from dogbreed.imaging import IMAGENET_MEAN, IMAGENET_STD, eval_crop_image, to_chw_uint8


def normalize(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 images (C, H, W or N, C, H, W) -> float32 scaled to [0, 1] and normalised.

    The same operations, in the same order, as torchvision's ``ToDtype(scale=True)`` and
    ``Normalize``: a batch normalised here equals its images normalised one by one.
    """
    shape = (-1, 1, 1)
    scaled = images.to(torch.float32).div_(255)
    return scaled.sub_(torch.tensor(mean, device=images.device).view(shape)).div_(
        torch.tensor(std, device=images.device).view(shape)
    )


class Normalize:
    """:func:`normalize` as a transform step."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return normalize(image, self.mean, self.std)


def eval_crop(image_size: int = 224) -> Callable[[Image.Image], torch.Tensor]:
    """:func:`dogbreed.imaging.eval_crop_image` as a transform: RGB PIL image -> uint8 tensor."""
    return partial(eval_crop_tensor, image_size=image_size)


def eval_crop_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """Resize the short side, centre-crop ``image_size``: RGB PIL image -> uint8 (3, H, W) tensor."""
    return torch.from_numpy(to_chw_uint8(eval_crop_image(image, image_size)))


def train_crop(image_size: int = 224) -> T.Compose:
    """Random resized crop, horizontal flip, light colour jitter: RGB PIL -> uint8 tensor."""
    return T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.25, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            T.PILToTensor(),
        ]
    )


def eval_transform(
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """:func:`eval_crop` then :func:`normalize`: RGB PIL image -> float32 tensor."""
    return T.Compose([eval_crop(image_size), Normalize(mean, std)])
