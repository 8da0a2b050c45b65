"""Where the training job reads and writes: SageMaker's /opt/ml tree, from the environment.

The toolkit exports ``SM_*`` variables to our program; without them (``python -m dogbreed.train``
run by hand) the same tree is found under ``SAGEMAKER_BASE_DIR`` (default ``/opt/ml``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dogbreed.atomic import write_atomically
from dogbreed.contract import CHECKPOINTS, MODEL, OPT_ML


@dataclass(frozen=True)
class JobPaths:
    base: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    input_config_dir: Path
    checkpoint_dir: Path
    channels: dict[str, Path]
    job_name: str | None = None  # TRAINING_JOB_NAME, which SageMaker sets in every job

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def job_checkpoint_dir(self) -> Path:
        """This job's checkpoints: in a folder named after the job where SageMaker names it.

        A tuning job's trials share one checkpoint location (SageMaker copies all of it into
        every trial), so each trial keeps to its own folder; a run without a job name (a plain
        ``docker run``) uses the location itself.
        """
        return self.checkpoint_dir / self.job_name if self.job_name else self.checkpoint_dir

    def write_failure(self, message: str, replace: bool = True) -> bool:
        """``output/failure``, written atomically: SageMaker shows its first 1024 characters.

        ``replace=False`` keeps a failure already written (the first rank to fail names the
        cause); returns whether this message was written.
        """
        text = message.strip() + "\n"
        return write_atomically(self.failure_file, lambda tmp: tmp.write_text(text), replace)

    @property
    def debug_hook_config(self) -> Path:
        return self.input_config_dir / "debughookconfig.json"

    @classmethod
    def from_env(cls, env: os._Environ | dict[str, str] = os.environ) -> JobPaths:
        base = Path(env.get("SAGEMAKER_BASE_DIR", OPT_ML))
        output_dir = Path(env.get("SM_OUTPUT_DIR", base / "output"))
        return cls(
            base=base,
            model_dir=Path(env.get("SM_MODEL_DIR", base / MODEL)),
            output_dir=output_dir,
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", output_dir / "data")),
            input_config_dir=Path(env.get("SM_INPUT_CONFIG_DIR", base / "input" / "config")),
            checkpoint_dir=Path(env.get("DOGBREED_CHECKPOINT_DIR", base / CHECKPOINTS)),
            channels=_channels(env, base),
            job_name=_job_name(env.get("TRAINING_JOB_NAME", "")),
        )


def _channels(env: os._Environ | dict[str, str], base: Path) -> dict[str, Path]:
    if "SM_CHANNELS" in env:
        names = json.loads(env["SM_CHANNELS"])
        return {
            n: Path(env.get(f"SM_CHANNEL_{n.upper()}", base / "input" / "data" / n)) for n in names
        }
    data = base / "input" / "data"
    return {p.name: p for p in sorted(data.iterdir()) if p.is_dir()} if data.is_dir() else {}


def _job_name(raw: str) -> str | None:
    """SageMaker's job names are 1-63 of [a-zA-Z0-9-]; anything else is not used as a folder."""
    name = raw.strip()
    return name if re.fullmatch(r"[A-Za-z0-9](-*[A-Za-z0-9])*", name) and len(name) <= 63 else None
