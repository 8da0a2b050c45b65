"""torch: the runtime of the full serving image, for GPU endpoints and artifacts without ONNX."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from dogbreed.artifact import ModelSpec, load_artifact
from dogbreed.serve.tuning import WARMUP_ROUNDS


class TorchRuntime:
    """The artifact's ResNet18 in eval mode, channels_last, on ``device``."""

    warm_batches = WARMUP_ROUNDS

    def __init__(self, model_dir: Path, spec: ModelSpec, device: str, threads: int) -> None:
        self.device = torch.device(device)
        self.threads = threads
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # already set in this process
            torch.set_num_interop_threads(1)
        model, _ = load_artifact(model_dir, self.device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.description = f"torch {torch.__version__} fp32 (model.pt) on {device}"
        if self.device.type == "cpu":
            self.description += f", {threads} thread(s)"

    def start_thread(self) -> None:
        """Fix the inference thread's OpenMP pool size before any other thread sets its own."""
        torch.set_num_threads(self.threads)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            inputs = torch.from_numpy(batch).to(
                self.device, memory_format=torch.channels_last, non_blocking=True
            )
            return torch.softmax(self.model(inputs).float(), dim=1).cpu().numpy()
