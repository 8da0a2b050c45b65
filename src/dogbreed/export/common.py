"""What the export's two sides share: its error, its limits and its error line's prefix.

The training job (:mod:`.process`, torch-free and onnx-free) and the export process
(:mod:`.command`, :mod:`.to_onnx`, :mod:`.quantize`) both import this module; it imports nothing.
"""

ONNX_SITE_VAR = "DOGBREED_ONNX_SITE"
#: Training images the int8 calibration sees (drawn at random with a fixed seed).
CALIBRATION_IMAGES = 256
#: Validation images on which the fp32 ONNX model must match torch.
CHECK_IMAGES = 256
BATCH = 32
ERROR_PREFIX = "dogbreed-export: error:"


class ExportError(RuntimeError):
    """The export cannot run, or its result failed a check."""
