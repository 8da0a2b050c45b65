"""Pixels without torch: decoding and the evaluation preprocessing, shared by every runtime.

The training job's evaluation, the torch model server and the slim (ONNX Runtime) server all
preprocess through these functions, so an image becomes the same numbers wherever it is scored:
decode (JPEGs at a reduced DCT scale), EXIF orientation, any mode to RGB, resize the short side
(PIL bilinear with antialiasing, as torchvision's ``Resize`` does on PIL images), centre crop,
then scale to [0, 1] and normalise in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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


def eval_crop_image(image: Image.Image, image_size: int) -> Image.Image:
    """Resize the short side to :func:`eval_resize_size`, then centre-crop ``image_size``.

    The same sizes and rounding as torchvision's ``Resize(antialias=True)`` and ``CenterCrop`` on
    a PIL image (an image whose short side already fits is not resampled).
    """
    short_target = eval_resize_size(image_size)
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short != short_target:
        long_target = int(short_target * long / short)
        size = (short_target, long_target) if width <= height else (long_target, short_target)
        image = image.resize(size, Image.Resampling.BILINEAR)
        width, height = size
    top = int(round((height - image_size) / 2.0))
    left = int(round((width - image_size) / 2.0))
    return image.crop((left, top, left + image_size, top + image_size))


def to_chw_uint8(image: Image.Image) -> np.ndarray:
    """An RGB image as a (3, H, W) uint8 array."""
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))


def normalize_array(
    pixels: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """uint8 (3, H, W) or (N, 3, H, W) -> float32 scaled to [0, 1] and normalised per channel.

    The operations of :func:`dogbreed.train.presets.normalize`, in its order and precision.
    """
    shape = (3, 1, 1)
    scaled = pixels.astype(np.float32) / np.float32(255)
    scaled -= np.asarray(mean, dtype=np.float32).reshape(shape)
    scaled /= np.asarray(std, dtype=np.float32).reshape(shape)
    return scaled


def eval_array(
    image: Image.Image,
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """A decoded RGB image -> the float32 (3, image_size, image_size) array the model takes."""
    return normalize_array(to_chw_uint8(eval_crop_image(image, image_size)), mean, std)


def load_eval_array(
    path: Path,
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Open, decode and preprocess an image file exactly as the training job's evaluation does."""
    with Image.open(path) as image:
        rgb = decode_rgb(image, eval_resize_size(image_size))
    return eval_array(rgb, image_size, mean, std)
