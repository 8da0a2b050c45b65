"""ONNX export (fp32, and int8 where accurate enough), run in a process of its own.

:mod:`.process` is the training job's torch-free side; :mod:`.command` (``dogbreed-export``,
``python -m dogbreed.export``), :mod:`.to_onnx` and :mod:`.quantize` run in the export process.
"""
