"""What runs the model: the torch runtime (GPU endpoints, any artifact) or ONNX Runtime (the slim
CPU image), chosen once in the server's master from the settings and the artifact.

Both take the same preprocessed batch, a float32 (N, 3, H, W) array from :mod:`dogbreed.imaging`,
and return float32 (N, classes) probabilities, so the Flask app, the batcher, admission control and
the response format do not know which one serves.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dogbreed.artifact import ONNX_FP32_FILE, ONNX_INT8_FILE, ArtifactError, ModelSpec

if TYPE_CHECKING:  # the master chooses without importing numpy: it only forks the workers
    import numpy as np

#: DOGBREED_RUNTIME values: the best one installed for this artifact, or one by name.
RUNTIMES = ("auto", "onnx", "torch")
#: DOGBREED_PRECISION values for ONNX Runtime: int8 where the artifact has it, or one by name.
PRECISIONS = ("auto", "int8", "fp32")


class Runtime(Protocol):
    """A loaded model that maps a preprocessed batch to class probabilities."""

    description: str  # e.g. "onnxruntime 1.32.0 int8 (model.int8.onnx) on cpu"
    warm_batches: int  # full batches run before /ping answers 200, after one single image

    def start_thread(self) -> None:
        """Per-thread setup, run first on the inference thread."""

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) normalised images -> float32 (N, classes) probabilities."""


@dataclass(frozen=True)
class ModelChoice:
    """Which runtime serves which file of the artifact, as the master decided."""

    runtime: str  # "onnx" or "torch"
    model_file: Path

    @property
    def precision(self) -> str:
        return "int8" if self.model_file.name == ONNX_INT8_FILE else "fp32"


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def choose_model(model_dir: Path, runtime: str, precision: str, device: str) -> ModelChoice:
    """The runtime and model file to serve, or an ArtifactError saying what is missing.

    ``auto`` serves with ONNX Runtime on CPU where it is installed and the artifact holds an ONNX
    model (int8 when there is one and ``precision`` allows), else with torch.
    """
    if runtime not in RUNTIMES:
        raise ArtifactError(f"DOGBREED_RUNTIME must be one of {', '.join(RUNTIMES)}: {runtime!r}")
    if precision not in PRECISIONS:
        raise ArtifactError(
            f"DOGBREED_PRECISION must be one of {', '.join(PRECISIONS)}: {precision!r}"
        )
    onnx_files = {
        name: model_dir / file
        for name, file in (("int8", ONNX_INT8_FILE), ("fp32", ONNX_FP32_FILE))
        if (model_dir / file).is_file()
    }
    if runtime == "auto":
        use_onnx = device == "cpu" and installed("onnxruntime") and bool(onnx_files)
        if not use_onnx and not installed("torch"):
            raise ArtifactError(
                f"{model_dir} holds no {ONNX_FP32_FILE}: this image serves ONNX models only "
                "(no torch). Export the model with `dogbreed-export` (the train image has it) or "
                "serve it with the torch serving image"
            )
        runtime = "onnx" if use_onnx else "torch"
    if runtime == "torch":
        if not installed("torch"):
            raise ArtifactError("DOGBREED_RUNTIME=torch, but torch is not installed in this image")
        return ModelChoice("torch", model_dir / "model.pt")
    if not installed("onnxruntime"):
        raise ArtifactError("DOGBREED_RUNTIME=onnx, but onnxruntime is not installed")
    wanted = ("int8", "fp32") if precision == "auto" else (precision,)
    for name in wanted:
        if name in onnx_files:
            return ModelChoice("onnx", onnx_files[name])
    files = ", ".join(sorted(p.name for p in onnx_files.values())) or "none"
    raise ArtifactError(
        f"no {precision if precision != 'auto' else 'ONNX'} model in {model_dir} (ONNX files: "
        f"{files}); export it with `dogbreed-export`, or set DOGBREED_PRECISION to one it has"
    )


def load_runtime(choice: ModelChoice, spec: ModelSpec, device: str, threads: int) -> Runtime:
    """Load ``choice`` with ``threads`` intra-op threads on ``device``."""
    if choice.runtime == "onnx":
        from dogbreed.serve.onnx_runtime import OnnxRuntime

        return OnnxRuntime(choice.model_file, threads, choice.precision, spec.num_classes)
    from dogbreed.serve.torch_runtime import TorchRuntime

    return TorchRuntime(choice.model_file.parent, spec, device, threads)
