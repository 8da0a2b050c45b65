"""Which serving image an endpoint gets: the slim one (ONNX Runtime) on CPU, the torch one on GPU.

``scripts/build_and_push.sh`` pushes both: ``dogbreed-serve`` (CUDA torch, about 5.9 GB) and
``dogbreed-serve-slim`` (no torch). They answer the same ``/ping`` and ``/invocations``, so either
serves anywhere; the choice is about cost: a CPU instance given the torch image pulls gigabytes of
CUDA on every scale-out, and a GPU instance given the slim image leaves its GPU idle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dogbreed.launch.errors import LaunchError

#: ml.<family>.<size>, e.g. ml.m5.large, ml.g4dn.xlarge, ml.c7g.2xlarge.
INSTANCE_TYPE = re.compile(r"^ml\.(?P<family>[a-z]+[0-9][a-z0-9-]*)\.[a-z0-9]+$")
#: Families with NVIDIA GPUs: ml.g4dn, ml.g5, ml.g6, ml.p3, ml.p4d, ml.p5, ...
GPU_FAMILY = re.compile(r"^[gp][0-9]")
#: AWS Inferentia and Trainium: they need a Neuron-compiled model, which neither image holds.
NEURON_FAMILY = re.compile(r"^(inf|trn)[0-9]")
#: Graviton (arm64) families: c6g, c7g, m6g, m7g, r6g, t4g, c6gn, ...
GRAVITON_FAMILY = re.compile(r"^[a-z]+[0-9]+g")
#: What Serverless Inference runs on: CPU only.
SERVERLESS = "serverless"


@dataclass(frozen=True)
class ServingImages:
    """The image URIs the user pushed: ``slim`` (CPU) and ``torch`` (GPU); at least one."""

    slim: str | None = None
    torch: str | None = None

    def __post_init__(self) -> None:
        if not (self.slim or self.torch):
            raise LaunchError(
                "no serving image: pass --slim-image URI (dogbreed-serve-slim, for CPU and "
                "serverless) and/or --serve-image URI (dogbreed-serve, torch, for GPU); "
                "scripts/build_and_push.sh prints both"
            )


@dataclass(frozen=True)
class ImageChoice:
    uri: str
    why: str  # one line for the user: which image, for what
    warning: str | None = None  # a costly or wasteful choice the user made by omission


def uses_gpu(instance_type: str) -> bool:
    """True for GPU instance types; refuses Inferentia/Trainium and names that are not types.

    ``serverless`` and local mode's ``local`` are CPU; ``local_gpu`` is GPU.
    """
    if instance_type in (SERVERLESS, "local"):
        return False
    if instance_type == "local_gpu":
        return True
    match = INSTANCE_TYPE.match(instance_type)
    if not match:
        raise LaunchError(
            f"{instance_type!r} is not a SageMaker instance type (ml.<family>.<size>, "
            "e.g. ml.m5.large or ml.g4dn.xlarge)"
        )
    family = match["family"]
    if NEURON_FAMILY.match(family):
        raise LaunchError(
            f"{instance_type} is an AWS Inferentia/Trainium instance: it needs a Neuron-compiled "
            "model, which dogbreed does not build; pick a CPU type (e.g. ml.c7i.large) or a GPU "
            "one (e.g. ml.g4dn.xlarge)"
        )
    return bool(GPU_FAMILY.match(family))


def choose_image(images: ServingImages, instance_type: str) -> ImageChoice:
    """The slim image for CPU instance types and serverless, the torch image for GPU types.

    With only one image given it serves both kinds, with a warning where that costs money.
    """
    if uses_gpu(instance_type):
        if images.torch:
            return ImageChoice(images.torch, f"torch serving image for GPU ({instance_type})")
        return ImageChoice(
            images.slim or "",
            f"slim serving image (ONNX Runtime) on GPU ({instance_type}): the only image given",
            f"{instance_type} has a GPU that the slim image leaves idle: pass --serve-image "
            "(dogbreed-serve) to use it, or deploy on a CPU instance type, which costs less",
        )
    where = "serverless" if instance_type == SERVERLESS else f"CPU ({instance_type})"
    arm = (
        " (Graviton, arm64: the image must be built for linux/arm64)"
        if GRAVITON_FAMILY.match(instance_type.partition(".")[2])
        else ""
    )
    if images.slim:
        return ImageChoice(images.slim, f"slim serving image (ONNX Runtime) for {where}{arm}")
    return ImageChoice(
        images.torch or "",
        f"torch serving image on {where}{arm}: the only image given",
        "the torch image is about 5.9 GB of CUDA libraries that a CPU never uses, pulled again "
        "on every cold start and scale-out: push dogbreed-serve-slim "
        "(scripts/build_and_push.sh) and pass --slim-image",
    )
