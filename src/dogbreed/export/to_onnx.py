"""The export's work, run inside the export process (:mod:`dogbreed.export`), where ``onnx`` and
protobuf 6+ are importable: the trained model to fp32 ONNX, checked against torch on validation
images, then int8 (:mod:`dogbreed.export.quantize`), evaluated on the validation split.

The exporter is torch's TorchScript exporter (``dynamo=False``): it traces a ResNet18 exactly and
needs only ``onnx``, where the dynamo exporter also needs onnxscript. Opset 17: the exporter
supports up to 20; 17 holds every operator ResNet18 and a softmax need, and ONNX Runtime's
quantiser, ONNX Runtime releases back to 1.13 and OpenVINO all read it. The graph ends in a
softmax, so every runtime returns probabilities. Images go through :mod:`dogbreed.imaging`, the
evaluation preprocessing without torch that the servers share.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dogbreed.artifact import ONNX_FP32_FILE, ONNX_INT8_FILE, load_artifact, save_spec
from dogbreed.atomic import write_atomically
from dogbreed.export.common import BATCH, CALIBRATION_IMAGES, CHECK_IMAGES, ExportError
from dogbreed.export.quantize import INT8_SCHEME, Agreement, Session, compare, quantize_int8
from dogbreed.image_folders import scan_split
from dogbreed.imaging import load_eval_array
from dogbreed.splits import class_label

log = logging.getLogger("dogbreed.export")

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
#: Largest absolute difference allowed between torch's and ONNX Runtime's fp32 probabilities.
FP32_TOLERANCE = 1e-4

#: The int8 models tried in turn, each named by the stages it keeps in float, until one is within
#: int8-max-drop: every stage int8, then the stem (conv1 with bn1 folded in, relu, maxpool),
#: layer1 and layer2 in float. Early stages that were never trained (pretrained=false with
#: trainable other than all) quantise badly: 9.69 points lost on a digits model, 0.25 with these
#: in float (docs/training.md).
INT8_ATTEMPTS: tuple[tuple[str, ...], ...] = ((), ("conv1", "relu", "maxpool", "layer1", "layer2"))

Samples = Sequence[tuple[Path, int]]


def with_softmax(model: nn.Module) -> nn.Module:
    """The classifier followed by a softmax over classes, in eval mode on the CPU."""
    return nn.Sequential(model, nn.Softmax(dim=1)).cpu().eval()


def export_fp32(model: nn.Module, image_size: int, path: Path) -> None:
    """Write ``path``: float32 NCHW ``images`` -> ``probabilities``, any batch size."""
    example = torch.zeros(2, 3, image_size, image_size)
    batch = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            with_softmax(model),
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: batch, OUTPUT_NAME: batch},
            do_constant_folding=True,
        )


def check_fp32(
    model: nn.Module, run_onnx: Callable[[np.ndarray], np.ndarray], batches: Iterable[np.ndarray]
) -> dict[str, float]:
    """Largest |torch - ONNX| probability over ``batches``; :class:`ExportError` above tolerance."""
    reference = with_softmax(model)
    worst, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            expected = reference(torch.from_numpy(batch)).numpy()
            worst = max(worst, float(np.abs(run_onnx(batch) - expected).max()))
            count += len(batch)
    log.info(
        "fp32 ONNX vs torch on %d validation images: max |difference| in probabilities %.2e"
        " (tolerance %.0e)",
        count,
        worst,
        FP32_TOLERANCE,
    )
    if not worst <= FP32_TOLERANCE:  # also catches NaN
        raise ExportError(
            f"the exported ONNX model's probabilities differ from torch's by up to {worst:.3g}"
            f" on {count} validation images, above the tolerance {FP32_TOLERANCE:g}: the export"
            " is wrong, and no ONNX file was written"
        )
    return {"max_abs_diff": worst, "checked_images": count, "tolerance": FP32_TOLERANCE}


class ImageBatches:
    """Image files -> float32 (N, 3, H, W) batches through the evaluation preprocessing."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.image_size, self.mean, self.std = image_size, mean, std

    def _stack(self, samples: Samples) -> np.ndarray:
        size, mean, std = self.image_size, self.mean, self.std
        return np.stack([load_eval_array(path, size, mean, std) for path, _ in samples])

    def images(self, samples: Samples) -> Iterator[np.ndarray]:
        for start in range(0, len(samples), BATCH):
            yield self._stack(samples[start : start + BATCH])

    def labelled(self, samples: Samples) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(samples), BATCH):
            chunk = samples[start : start + BATCH]
            yield self._stack(chunk), np.array([label for _, label in chunk])


def split_samples(name: str, root: Path, class_names: list[str]) -> Samples:
    """A split's readable images, labelled in the model's class order."""
    split = scan_split(name, root)
    labels = [class_label(folder) for folder in split.class_folders]
    if labels != class_names:
        raise ExportError(
            f"the {name} images at {root} have classes {labels}, the model {class_names}:"
            " export with the data set the model was trained on"
        )
    return split.samples


def calibration_sample(train: Samples, count: int = CALIBRATION_IMAGES) -> Samples:
    """Up to ``count`` training images drawn at random (a fixed seed), in file order."""
    if len(train) <= count:
        return train
    chosen = np.random.default_rng(0).choice(len(train), size=count, replace=False)
    return [train[i] for i in sorted(chosen)]


def _ship(source: Path, destination: Path) -> None:
    write_atomically(destination, lambda tmp: shutil.copyfile(source, tmp))


def _attempt_record(
    float_stages: Sequence[str], result: Agreement, int8_max_drop: float
) -> dict[str, Any]:
    within = result.drop_points <= int8_max_drop
    what = f"with {', '.join(float_stages)} in float" if float_stages else "with every stage"
    return {
        "float_stages": list(float_stages),
        "int8_accuracy": result.int8_accuracy,
        "top1_agreement": result.top1_agreement,
        "drop_points": result.drop_points,
        "within_max_drop": within,
        "note": (
            f"{what}: accuracy {result.int8_accuracy:.4f} vs fp32 {result.fp32_accuracy:.4f} on"
            f" {result.images} validation images, a drop of {result.drop_points:.2f} points,"
            f" {'within' if within else 'above'} int8-max-drop {int8_max_drop:g};"
            f" top-1 agreement {result.top1_agreement:.4f}"
        ),
    }


def export_model_dir(
    model_dir: Path, train_dir: Path, valid_dir: Path, int8_max_drop: float
) -> dict[str, Any]:
    """Export, check, quantise and evaluate; write the files and ``model.json``; return its record."""
    model, spec = load_artifact(model_dir)
    train = split_samples("train", train_dir, spec.class_names)
    valid = split_samples("valid", valid_dir, spec.class_names)
    load = ImageBatches(spec.image_size, spec.mean, spec.std)
    with tempfile.TemporaryDirectory(prefix="dogbreed-export-") as work:
        fp32_path, int8_path = Path(work) / ONNX_FP32_FILE, Path(work) / ONNX_INT8_FILE
        export_fp32(model, spec.image_size, fp32_path)
        fp32 = Session(fp32_path)
        check = check_fp32(model, fp32, load.images(valid[:CHECK_IMAGES]))
        calibration = calibration_sample(train)
        log.info("int8: calibrating on %d training images", len(calibration))
        attempts: list[dict[str, Any]] = []
        for float_stages in INT8_ATTEMPTS:
            quantize_int8(fp32_path, int8_path, load.images(calibration), float_stages)
            result = compare(fp32, Session(int8_path), load.labelled(valid))
            attempts.append(_attempt_record(float_stages, result, int8_max_drop))
            if attempts[-1]["within_max_drop"]:
                break
            if len(attempts) < len(INT8_ATTEMPTS):
                log.info(
                    "int8 %s: retrying with %s kept in float (untrained or unusual early stages"
                    " quantise badly)",
                    attempts[-1]["note"],
                    ", ".join(INT8_ATTEMPTS[len(attempts)]),
                )
        shipped = attempts[-1]["within_max_drop"]
        note = "; ".join(f"int8 {attempt['note']}" for attempt in attempts)
        log.info("%s: %s", "shipping int8" if shipped else "leaving int8 out", note)
        _ship(fp32_path, model_dir / ONNX_FP32_FILE)
        if shipped:
            _ship(int8_path, model_dir / ONNX_INT8_FILE)
        else:
            (model_dir / ONNX_INT8_FILE).unlink(missing_ok=True)
    record = {
        "files": [ONNX_FP32_FILE, ONNX_INT8_FILE] if shipped else [ONNX_FP32_FILE],
        "opset": OPSET,
        "runtime": f"onnxruntime {version('onnxruntime')}",
        "fp32_check": check,
        "validation_images": result.images,
        "fp32_accuracy": result.fp32_accuracy,
        "int8_accuracy": result.int8_accuracy,  # the last attempt's: the shipped one, if any
        "int8_top1_agreement": result.top1_agreement,
        "int8_drop_points": result.drop_points,
        "int8_max_drop": int8_max_drop,
        "int8_shipped": shipped,
        "int8_float_stages": attempts[-1]["float_stages"] if shipped else None,
        "int8_attempts": attempts,
        "int8_note": note,
        "int8_scheme": INT8_SCHEME,
        "calibration_images": len(calibration),
    }
    save_spec(model_dir, replace(spec, onnx=record))
    return record
