"""ONNX Runtime without its telemetry.

Since 1.32 ONNX Runtime's Linux wheels upload usage events to Microsoft and keep a device ID and
an event cache under ``$HOME/.cache/Microsoft/DeveloperTools/.onnxruntime``. In the slim image's
non-root container, which has no home, that logs a warning at every start. A model server or a
training job in a user's account sends nothing the user did not ask for. So every process of
ours that loads onnxruntime gets ``ORT_DISABLE_TELEMETRY=1`` before the import: ONNX Runtime reads
it once, at import. A value the user set stays.
"""

from __future__ import annotations

from collections.abc import MutableMapping

VARIABLE = "ORT_DISABLE_TELEMETRY"


def disable_telemetry(env: MutableMapping[str, str]) -> None:
    """Set ``ORT_DISABLE_TELEMETRY=1`` in ``env`` unless it is set already."""
    env.setdefault(VARIABLE, "1")
