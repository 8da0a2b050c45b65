"""Bytes in, top-k breeds out: decode safely, preprocess as the training job evaluates, infer.

The forward pass runs on the :class:`~dogbreed.serve.batcher.Batcher` thread, which gathers the
inputs of concurrent requests into one batch; see :class:`Predictor` for where decoding runs.
Each request passes :class:`~dogbreed.serve.admission.Admission` first, or is shed at once.
Nothing here imports torch: the model runs in a :class:`~dogbreed.serve.runtime.Runtime`.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from dogbreed.artifact import ModelSpec
from dogbreed.imaging import decode_rgb, eval_array, eval_resize_size
from dogbreed.serve.admission import Admission
from dogbreed.serve.batcher import Batcher
from dogbreed.serve.runtime import Runtime

log = logging.getLogger(__name__)

#: Formats the server decodes, whatever image content type the client declared. Not TIFF: a
#: 1,662-byte 40 MP bilevel TIFF took 296 ms to decode, a 232 KB float one 1,080 ms (issue 21).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

#: An image's encoded bytes: in memory, or a large raw body spooled to a file (.request_body).
ImageData = bytes | IO[bytes]


class InputError(ValueError):
    """The request holds something the server cannot turn into a prediction (HTTP 400)."""

    status = 400


class ImageTooLarge(InputError):
    """An image whose pixel count exceeds the configured limit (HTTP 413)."""

    status = 413


class UnsupportedImage(InputError):
    """An image in a format the server does not decode, by its header bytes (HTTP 415)."""

    status = 415


class ModelOutputError(RuntimeError):
    """The model gave probabilities that are not finite numbers (HTTP 500, not a bare ``NaN``)."""

    status = 500


@dataclass(frozen=True)
class Prediction:
    label: str
    class_index: int
    probability: float

    def as_dict(self) -> dict[str, str | int | float]:
        return {
            "label": self.label,
            "class_index": self.class_index,
            "probability": self.probability,
        }


def byte_count(data: ImageData) -> int:
    """How many bytes ``data`` holds."""
    if isinstance(data, bytes):
        return len(data)
    return data.seek(0, io.SEEK_END)


def readable(data: ImageData) -> IO[bytes]:
    """``data`` as a file positioned at its start (a spooled file is rewound, not copied)."""
    if isinstance(data, bytes):
        return io.BytesIO(data)
    data.seek(0)
    return data


def open_image(
    data: ImageData, max_pixels: int, resize_to: int, what: str = "image"
) -> Image.Image:
    """Open ``data`` (its header only) and refuse it before any pixel is decoded: a format not
    served (415), more than ``max_pixels`` (413), or too elongated to resize within them (400)."""
    size = byte_count(data)
    if not size:
        raise InputError(f"{what} is empty: send the bytes of a JPEG or PNG image")
    try:
        image = Image.open(readable(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{what} is refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        refused = format_of(data)
        if refused is not None:
            raise UnsupportedImage(
                f"{what} is a {refused} image; the server decodes {', '.join(IMAGE_FORMATS)}"
            ) from None
        raise InputError(
            f"{what} is not a decodable image ({size} bytes starting {readable(data).read(8)!r}); "
            f"supported formats: {', '.join(IMAGE_FORMATS)}"
        ) from None
    except Exception as exc:  # corrupt headers surface as many exception types
        raise InputError(f"{what} has an unreadable header: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"{what} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{what} is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} pixels"
        )
    short, long = sorted((width, height))
    resized_pixels = resize_to * resize_to * long // short
    if resized_pixels > max_pixels:
        raise InputError(
            f"{what} is {width}x{height}: its aspect ratio is too extreme to resize "
            f"({resized_pixels:,} pixels after resizing the short side to {resize_to})"
        )
    return image


def format_of(data: ImageData) -> str | None:
    """The format PIL recognises in ``data``'s header bytes among all it knows (None: none)."""
    try:
        with Image.open(readable(data)) as image:
            return image.format
    except Exception:
        return None


def decoded_pixels(image: Image.Image, resize_to: int) -> int:
    """The pixels decoding ``image`` produces: a JPEG at the DCT scale it decodes at."""
    if image.format == "JPEG":
        image.draft("RGB", (resize_to, resize_to))
    width, height = image.size
    return width * height


def decode_image(
    data: ImageData, max_pixels: int, resize_to: int, what: str = "image"
) -> Image.Image:
    """Decode ``data`` into an upright RGB image, refusing bombs before their pixels are decoded.

    ``resize_to`` is the eval transform's short-side size: JPEGs decode at the smallest DCT scale
    that keeps both sides >= it, exactly as the training job's evaluation decodes them; an image so
    elongated that resizing it would exceed ``max_pixels`` is refused.
    """
    image = open_image(data, max_pixels, resize_to, what)
    width, height = image.size
    try:
        return decode_rgb(image, resize_to)  # as the training job's evaluation decodes
    except Exception as exc:  # truncated data, bad chunks, decoder errors...
        problem = str(exc)
    # Freed now, and raised outside the except block: an error whose context held the decoder's
    # frames kept their pixels alive until the request was answered, 152 MiB per 68-byte PNG
    # claiming 8000x5000 (16 at once: +2,418 MiB, never returned under tcmalloc).
    image.close()
    raise InputError(f"cannot decode {what} ({image.format} {width}x{height}): {problem}")


@dataclass(frozen=True)
class EncodedImage:
    """Image bytes queued for the inference thread to decode, named for error messages."""

    data: ImageData
    name: str


class Predictor:
    """A loaded model, its preprocessing and its batcher: ``predict(list of image bytes, k)``.

    Where images are decoded and preprocessed:

    - ``preprocess_on_requests=False`` (the CPU default): on the inference thread, each image as
      the batcher takes it, while the batch still gathers (the wait for the next requests is spent
      decoding the ones that came). The runtime's thread pool is the only one computing, and the
      forward pass uses every core anyway: on 2 cores, request threads running tensor operations
      each got their own OpenMP team and a ResNet18 forward pass took ~28 ms instead of ~17 ms.
    - ``preprocess_on_requests=True`` (the GPU default): on the request threads, ``decode_slots``
      at a time, overlapping with the forward pass on the device.

    ``max_batch_size`` is the largest forward pass (the server resolves it in its master:
    :meth:`~dogbreed.serve.config.ServerSettings.for_model`). ``max_queue_wait_s`` and
    ``max_waiting_requests`` are the admission limits (no limit: None).
    """

    def __init__(
        self,
        runtime: Runtime,
        spec: ModelSpec,
        *,
        max_batch_size: int,
        max_batch_wait_s: float = 0.0,
        max_image_pixels: int,
        max_request_pixels: int | None = None,
        preprocess_on_requests: bool = False,
        decode_slots: int = 1,
        timeout_s: float | None = None,
        max_queue_wait_s: float | None = None,
        max_waiting_requests: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.spec = spec
        self.resize_to = eval_resize_size(spec.image_size)
        self.max_image_pixels = max_image_pixels
        self.max_request_pixels = max_request_pixels
        self.timeout_s = timeout_s
        self.preprocess_on_requests = preprocess_on_requests
        self._decode_slots = threading.BoundedSemaphore(decode_slots)
        self.batcher = Batcher(
            self._forward_rows,
            max_batch_size,
            max_batch_wait_s,
            prepare=self._prepare_input,
            on_start=runtime.start_thread,
        )
        self.admission = Admission(
            math.inf if max_queue_wait_s is None else max_queue_wait_s,
            max_waiting_requests or math.inf,
            lambda: self.batcher.service_time.seconds_per_input,
        )

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def max_batch_size(self) -> int:
        """The largest forward pass the inference thread forms."""
        return self.batcher.max_batch_size

    @property
    def batches_run(self) -> int:
        """Forward passes run so far."""
        return self.batcher.batches_run

    def announce_request(self) -> AbstractContextManager[None]:
        """Within this block a request is on its way: a partial batch may wait (briefly) for it."""
        return self.batcher.announce()

    def stop(self) -> None:
        """Finish what is queued, then end the inference thread."""
        self.batcher.stop()

    def preprocess(self, data: ImageData, what: str = "image") -> np.ndarray:
        """Decode and preprocess one image exactly as the training job's evaluation does."""
        image = decode_image(data, self.max_image_pixels, self.resize_to, what)
        try:
            return eval_array(image, self.spec.image_size, self.spec.mean, self.spec.std)
        except Exception as exc:  # an image the preprocessing cannot take is a bad input too
            problem = str(exc)
        image.close()  # as in decode_image: no error context keeps the pixels alive
        raise InputError(f"cannot preprocess {what}: {problem}")

    def check_pixels(self, images: list[ImageData], names: list[str]) -> None:
        """Before anything is decoded or queued, from the images' headers: each image decodable
        and within the pixel limit, and all of them together within ``max_request_pixels``."""
        total = 0
        for data, name in zip(images, names, strict=True):
            with open_image(data, self.max_image_pixels, self.resize_to, name) as image:
                total += decoded_pixels(image, self.resize_to)
        if self.max_request_pixels is not None and total > self.max_request_pixels:
            raise ImageTooLarge(
                f"the {len(images)} images of this request decode to {total:,} pixels together, "
                f"more than the per-request limit of {self.max_request_pixels:,} pixels: "
                "send them in several requests"
            )

    def _preprocess_on_request_thread(self, data: ImageData, what: str) -> np.ndarray:
        with self._decode_slots:
            return self.preprocess(data, what)

    def _prepare_input(self, item: np.ndarray | EncodedImage) -> np.ndarray:
        """On the inference thread, while its batch gathers: decode what is still encoded."""
        if isinstance(item, EncodedImage):
            return self.preprocess(item.data, item.name)
        return item

    def _forward_rows(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """On the inference thread: one forward pass, one row of probabilities per input."""
        return list(self.runtime.forward(np.stack(arrays)))

    def probabilities(self, images: list[ImageData], names: list[str] | None = None) -> np.ndarray:
        """Class probabilities per image, once admitted (else :class:`Overloaded` at once).

        Encoded images are queued all at once (the inference thread decodes each as it takes
        it); images preprocessed here go one batch at a time to bound memory, each part after
        the first ahead of the queue. ``timeout_s`` bounds the whole request.
        """
        names = names or ["image"] * len(images)
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        self.check_pixels(images, names)
        with self.admission.admit(len(images)):
            if not self.preprocess_on_requests:
                encoded = [EncodedImage(d, n) for d, n in zip(images, names, strict=True)]
                return np.stack(self.batcher.run(encoded, self.timeout_s))
            step = self.max_batch_size
            rows: list[np.ndarray] = []
            for start in range(0, len(images), step):
                chunk = zip(images[start : start + step], names[start : start + step], strict=True)
                inputs = [self._preprocess_on_request_thread(data, name) for data, name in chunk]
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                rows += self.batcher.run(inputs, remaining, ahead=start > 0)
        return np.stack(rows)

    def predict(
        self, images: list[ImageData], top_k: int, names: list[str] | None = None
    ) -> list[list[Prediction]]:
        """The ``top_k`` most likely breeds (k bounded by the class count) for each image."""
        probs = self.probabilities(images, names)
        finite = np.isfinite(probs).all(axis=1)
        if not finite.all():
            bad = [(names or ["image"] * len(images))[i] for i in np.flatnonzero(~finite)]
            raise ModelOutputError(
                f"the model's output for {', '.join(bad[:5])} is not a finite number (NaN or "
                "infinity): the artifact is broken (its weights, or model.json's mean and std)"
            )
        k = min(top_k, self.num_classes)
        # A stable sort on the negated probabilities: ties keep the lower class index first.
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [Prediction(self.spec.class_names[i], int(i), float(row[i])) for i in indices]
            for row, indices in zip(probs, order, strict=True)
        ]

    def warm_up(self, rounds: int = 1) -> None:
        """One full pass (encode, decode, preprocess, batch, forward), then ``rounds`` full batches.

        Everything runs through the batcher, on the thread that will serve requests.
        """
        rng = np.random.default_rng(0)
        size = self.spec.image_size
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        self.probabilities([buffer.getvalue()])  # not predict(): a NaN model starts, answers 500
        self.batcher.service_time.restart()  # measured from warm batches, not the cold first one
        blank = np.zeros((3, size, size), dtype=np.float32)
        for _ in range(rounds):
            self.batcher.run([blank] * self.max_batch_size)
        log.info(
            "warm-up done (%s): 1 image, %d batches of %d",
            self.runtime.description,
            rounds,
            self.max_batch_size,
        )
