"""The ONNX Runtime side of the export: sessions, int8 static quantisation and evaluation.

Runs only inside the export process (:mod:`dogbreed.export`). int8 is ONNX Runtime's static
QDQ quantisation: int8 weights per output channel, uint8 activations calibrated (MinMax) on
training images. Measured on a 2-core machine, it runs ResNet18 at 156-170 img/s at batch 1
against 54-56 for ONNX Runtime fp32 and 34-41 for torch eager (docs/training.md).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from dogbreed.export.common import ExportError

log = logging.getLogger("dogbreed.export")

INT8_SCHEME = (
    "static QDQ, int8 weights per channel, uint8 activations, MinMax calibration; float logits"
)


class Session:
    """One ONNX model on ONNX Runtime's CPU provider: a float32 batch in, probabilities out."""

    def __init__(self, path: Path) -> None:
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class _Batches(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one batch at a time."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def stage_nodes(graph: onnx.GraphProto, stages: Sequence[str]) -> list[str]:
    """The names of every node of the classifier's top-level modules ``stages``.

    The TorchScript exporter names nodes by module path: ``/0/layer1/layer1.0/conv1/Conv``, 0
    being the classifier inside :func:`dogbreed.export.to_onnx.with_softmax`. Raises
    :class:`ExportError` naming a stage that has no node, rather than quantise it unnoticed.
    """
    found = {
        stage: [n.name for n in graph.node if n.name.startswith(f"/0/{stage}/")] for stage in stages
    }
    missing = [stage for stage, names in found.items() if not names]
    if missing:
        raise ExportError(
            f"the exported graph has no node named /0/<stage>/... for the stages {missing} (its"
            f" first nodes: {[n.name for n in graph.node[:5]]}): the exporter's node names"
            " changed, and dogbreed.export.quantize must find the stages another way"
        )
    return [name for names in found.values() for name in names]


def quantize_int8(
    fp32: Path, out: Path, calibration: Iterable[np.ndarray], float_stages: Sequence[str] = ()
) -> None:
    """Write ``out``: ``fp32`` quantised to int8 QDQ, calibrated on ``calibration`` batches.

    The logits and the softmax stay float: 256 levels of logits would blur the probabilities
    and turn near ties into exact ones. So does every node of ``float_stages`` (top-level module
    names of the classifier, such as ``layer1``).
    """
    with tempfile.TemporaryDirectory(prefix="dogbreed-quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        input_name = Session(prepared).input_name
        graph = onnx.load(str(prepared)).graph
        softmax = [n.name for n in graph.node if n.op_type == "Softmax"]
        quantize_static(
            str(prepared),
            str(out),
            _Batches(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=softmax + stage_nodes(graph, float_stages),
            extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"]},
        )


@dataclass
class Agreement:
    """fp32 and int8 predictions over a labelled split."""

    images: int = 0
    fp32_correct: int = 0
    int8_correct: int = 0
    agree: int = 0

    def add(self, fp32: np.ndarray, int8: np.ndarray, labels: np.ndarray) -> None:
        top_fp32, top_int8 = fp32.argmax(axis=1), int8.argmax(axis=1)
        self.images += len(labels)
        self.fp32_correct += int((top_fp32 == labels).sum())
        self.int8_correct += int((top_int8 == labels).sum())
        self.agree += int((top_fp32 == top_int8).sum())

    @property
    def fp32_accuracy(self) -> float:
        return self.fp32_correct / self.images

    @property
    def int8_accuracy(self) -> float:
        return self.int8_correct / self.images

    @property
    def drop_points(self) -> float:
        """fp32 accuracy minus int8 accuracy, in percentage points."""
        return 100 * (self.fp32_correct - self.int8_correct) / self.images

    @property
    def top1_agreement(self) -> float:
        return self.agree / self.images


def compare(
    fp32: Session, int8: Session, batches: Iterable[tuple[np.ndarray, np.ndarray]]
) -> Agreement:
    """Run both models on (images, labels) batches."""
    result = Agreement()
    for images, labels in batches:
        result.add(fp32(images), int8(images), labels)
    return result
