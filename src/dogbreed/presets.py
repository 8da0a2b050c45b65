"""Image transforms: the one place that defines how pixels become tensors.

Each transform is a crop to a uint8 tensor followed by :func:`normalize`. The training job's
loaders run only the crop (:func:`train_crop`, :func:`eval_crop`), so that batches cross from
loader processes as uint8, a quarter of float32's bytes, and normalise after the transfer. The
model server imports :func:`eval_transform`, which is the same crop and the same normalisation
in one step, so serving preprocesses exactly as validation did.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2 as T

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Eval resizes the short side to ``image_size / CROP_RATIO`` then centre-crops (224 -> 256 -> 224).
CROP_RATIO = 0.875


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (L, P, CMYK, RGBA, I;16 ...) to RGB.

    Transparent pixels are composited on white rather than left as whatever colour they hide.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I") or image.mode == "F":
        # 16/32-bit greyscale: scale to 8 bits before converting.
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


def decode_rgb(image: Image.Image, min_side: int) -> Image.Image:
    """Decode an opened image to RGB; JPEGs at the smallest DCT scale keeping both sides >= min_side.

    The reduced-scale decode (PIL ``draft``) is exact JPEG downscaling and makes large photos
    several times cheaper to decode; it never goes below what the transform will crop.
    """
    if image.format == "JPEG":
        image.draft("RGB", (min_side, min_side))
    return to_rgb(image)


def eval_resize_size(image_size: int) -> int:
    """Short side the eval transform resizes to before its centre crop."""
    return max(image_size, round(image_size / CROP_RATIO))


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


def eval_crop(image_size: int = 224) -> T.Compose:
    """Resize the short side, centre-crop ``image_size``: RGB PIL image -> uint8 tensor."""
    return T.Compose(
        [
            T.Resize(eval_resize_size(image_size), antialias=True),
            T.CenterCrop(image_size),
            T.PILToTensor(),
        ]
    )


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
