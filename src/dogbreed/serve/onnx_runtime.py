"""ONNX Runtime on the CPU: the slim image's runtime, for the fp32 or int8 model of an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from dogbreed.artifact import ArtifactError, read_model_file


class OnnxRuntime:
    """One InferenceSession with ``threads`` intra-op threads, called from one inference thread."""

    #: No full-batch warm-up: ONNX Runtime's first batch of 8 at 224 px took as long as the next
    #: (0.54 and 0.58 s, int8, load average 7), so warming it only delays /ping (cold start).
    warm_batches = 0

    def __init__(
        self, model_file: Path, threads: int, precision: str, num_classes: int | None = None
    ) -> None:
        """Load ``model_file``; with ``num_classes`` (model.json's), refuse a model whose output
        has another number of classes: its labels would be wrong or missing."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                read_model_file(model_file), options, providers=["CPUExecutionProvider"]
            )
        except ArtifactError:
            raise
        except Exception as exc:  # onnxruntime raises its own types for bad models
            raise ArtifactError(f"cannot load {model_file} with ONNX Runtime: {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()[0].shape[-1]
        if num_classes is not None and isinstance(outputs, int) and outputs != num_classes:
            raise ArtifactError(
                f"{model_file} outputs {outputs} classes, but model.json names {num_classes}: "
                "the ONNX files and model.json come from different training jobs"
            )
        self.description = (
            f"onnxruntime {ort.__version__} {precision} ({model_file.name}) on cpu, "
            f"{threads} thread(s)"
        )

    def start_thread(self) -> None:
        """Nothing per thread: the session owns its thread pool."""

    def forward(self, batch: np.ndarray) -> np.ndarray:
        (probabilities,) = self.session.run(None, {self.input_name: batch})
        return probabilities.astype(np.float32, copy=False)
