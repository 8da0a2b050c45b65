"""Where the training job reads and writes: SageMaker's /opt/ml tree, from the environment.

The toolkit exports ``SM_*`` variables to our program; without them (``python -m dogbreed.train``
run by hand) the same tree is found under ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobPaths:
    base: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    input_config_dir: Path
    checkpoint_dir: Path
    channels: dict[str, Path]

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    def write_failure(self, message: str) -> None:
        """``output/failure``, written atomically: SageMaker shows its first 1024 characters."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.failure_file.with_suffix(".tmp")
        tmp.write_text(message.strip() + "\n")
        os.replace(tmp, self.failure_file)

    @property
    def debug_hook_config(self) -> Path:
        return self.input_config_dir / "debughookconfig.json"

    @classmethod
    def from_env(cls, env: os._Environ | dict[str, str] = os.environ) -> JobPaths:
        base = Path(env.get("SAGEMAKER_BASE_DIR", "/opt/ml"))
        output_dir = Path(env.get("SM_OUTPUT_DIR", base / "output"))
        return cls(
            base=base,
            model_dir=Path(env.get("SM_MODEL_DIR", base / "model")),
            output_dir=output_dir,
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", output_dir / "data")),
            input_config_dir=Path(env.get("SM_INPUT_CONFIG_DIR", base / "input" / "config")),
            checkpoint_dir=Path(env.get("DOGBREED_CHECKPOINT_DIR", base / "checkpoints")),
            channels=_channels(env, base),
        )


def _channels(env: os._Environ | dict[str, str], base: Path) -> dict[str, Path]:
    if "SM_CHANNELS" in env:
        names = json.loads(env["SM_CHANNELS"])
        return {
            n: Path(env.get(f"SM_CHANNEL_{n.upper()}", base / "input" / "data" / n)) for n in names
        }
    data = base / "input" / "data"
    return {p.name: p for p in sorted(data.iterdir()) if p.is_dir()} if data.is_dir() else {}
