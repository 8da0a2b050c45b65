"""SageMaker Debugger (smdebug) wiring, off cleanly when smdebug or its config is absent.

SageMaker writes ``input/config/debughookconfig.json`` when a job has a ``DebugHookConfig``;
the hook reads the collections and save intervals from it and writes tensors to its
``LocalPath`` (default ``/opt/ml/output/tensors``), which SageMaker uploads for the rules.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

log = logging.getLogger(__name__)


class DebuggerHook:
    """A thin wrapper: every method is a no-op when no smdebug hook is active."""

    def __init__(self, hook: Any = None, modes: Any = None) -> None:
        self._hook = hook
        self._modes = modes

    def register(self, model: nn.Module, loss: nn.Module) -> None:
        if self._hook is not None:
            self._hook.register_module(model)
            self._hook.register_loss(loss)

    def train(self) -> None:
        if self._hook is not None:
            self._hook.set_mode(self._modes.TRAIN)

    def eval(self) -> None:
        if self._hook is not None:
            self._hook.set_mode(self._modes.EVAL)

    def close(self) -> None:
        if self._hook is not None:
            self._hook.close()


def create_hook(config_path: Path) -> DebuggerHook:
    """The smdebug hook from SageMaker's hook config, or an inactive one (and why, in the log)."""
    if not config_path.is_file():
        log.info("debugger: no hook config at %s; training without smdebug", config_path)
        return DebuggerHook()
    try:
        from smdebug import modes
        from smdebug.pytorch import Hook
    except ImportError as exc:
        log.warning(
            "debugger: %s exists but smdebug cannot be imported (%s); no tensors saved",
            config_path,
            exc,
        )
        return DebuggerHook()

    hook = Hook.create_from_json_file(json_file_path=str(config_path))
    log.info("debugger: smdebug hook from %s writing to %s", config_path, hook.out_dir)
    return DebuggerHook(hook, modes)
