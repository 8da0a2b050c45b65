"""Server settings from the environment, and the worker/thread arithmetic behind the defaults.

SageMaker's conventional variables come first; ``DOGBREED_*`` variables tune the rest. Defaults
follow the hardware: on CPU one worker per ``DOGBREED_TORCH_THREADS`` cores so that intra-op
threads x workers never exceed the cores this process may use; on GPU one worker per device
(each worker batches for its own device).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
#: SageMaker's real-time payload limit: 6 MB (6,291,456 bytes).
DEFAULT_MAX_PAYLOAD_MB = 6
#: SageMaker batch transform accepts at most 100 MB per request.
MAX_PAYLOAD_MB_LIMIT = 100
#: A 6 MB JPEG of a photo rarely exceeds 40 megapixels; anything larger is refused before decoding.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: SageMaker waits 60 s for an answer from /invocations.
DEFAULT_TIMEOUT_S = 60
#: SageMaker sends SIGKILL 30 s after SIGTERM; drain within that.
DEFAULT_GRACEFUL_TIMEOUT_S = 25
#: Request threads per worker: every connection of a 512-client spike gets one at once, and
#: admission control keeps 1/16 of them free (see ServerSettings.max_waiting_requests).
DEFAULT_THREADS = 1024


class ConfigError(ValueError):
    """An environment variable or option holds a value the server cannot use."""


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def cuda_device_count() -> int:
    """GPUs torch can see, counted in a child process.

    CUDA initialised in the gunicorn master would be unusable in the workers it forks, so the
    master never touches CUDA itself; without the NVIDIA driver's device node it is 0 at once.
    """
    if not Path("/dev/nvidiactl").exists():
        return 0
    count = "import torch; print(torch.cuda.device_count())"
    try:
        result = subprocess.run(
            [sys.executable, "-c", count], capture_output=True, text=True, timeout=300, check=True
        )
        return int(result.stdout.split()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0


def _int(env: Mapping[str, str], names: tuple[str, ...], default: int, minimum: int = 1) -> int:
    """The first of ``names`` set in ``env`` as an integer >= ``minimum``, else ``default``."""
    for name in names:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value
    return default


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


PREPROCESS_PLACES = ("inference-thread", "request-threads")


def _preprocess_on_requests(env: Mapping[str, str], device: str) -> bool:
    place = env.get("DOGBREED_PREPROCESS_ON", "").strip().lower()
    if not place:
        return device == "cuda"
    if place not in PREPROCESS_PLACES:
        raise ConfigError(
            f"DOGBREED_PREPROCESS_ON must be one of {', '.join(PREPROCESS_PLACES)}, got {place!r}"
        )
    return place == "request-threads"


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs, resolved once in the gunicorn master and shared by workers."""

    model_dir: Path
    host: str
    port: int
    device: str  # "cpu" or "cuda"
    gpus: int  # CUDA devices the workers share (0 on CPU)
    workers: int
    threads: int  # request threads per worker (gunicorn gthread)
    torch_threads: int  # intra-op threads per worker
    preprocess_on_requests: bool  # decode on request threads (GPU) or the inference thread (CPU)
    decode_threads: int  # request threads that may decode/preprocess at once, per worker
    timeout_s: int
    max_queue_wait_s: float  # admission: shed a request whose estimated queue wait exceeds this
    graceful_timeout_s: int
    keepalive_s: int
    max_payload_bytes: int
    max_image_pixels: int
    max_batch_size: int | None  # None: chosen per model on CPU (predictor.cpu_batch_size)
    max_batch_wait_s: float
    default_top_k: int
    max_images_per_request: int
    warmup_rounds: int

    @property
    def max_payload_mb(self) -> int:
        return self.max_payload_bytes // MIB

    @property
    def worker_connections(self) -> int:
        """Open connections per worker: one per thread, as many again kept alive while idle."""
        return 2 * self.threads

    @property
    def max_waiting_requests(self) -> int:
        """Requests a worker lets wait for inference: all its threads but 1/16, kept for /ping."""
        return max(1, self.threads - max(1, self.threads // 16))

    @property
    def max_concurrent_transforms(self) -> int:
        """Concurrent requests that keep every worker's batches full (batch transform's hint),
        within SageMaker's rule MaxConcurrentTransforms x MaxPayloadInMB <= 100."""
        wanted = self.workers * max(8, self.max_batch_size or 16)
        return max(1, min(wanted, MAX_PAYLOAD_MB_LIMIT // max(1, self.max_payload_mb)))

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        cpus: int | None = None,
        gpus: int | None = None,
    ) -> ServerSettings:
        """Read the settings from ``env`` (default ``os.environ``) for ``cpus`` cores, ``gpus`` GPUs."""
        env = os.environ if env is None else env
        cpus = available_cpus() if cpus is None else cpus
        device = env.get("DOGBREED_DEVICE", "").strip().lower()
        if device not in ("", "cpu", "cuda"):
            raise ConfigError(f"DOGBREED_DEVICE must be 'cpu' or 'cuda', got {device!r}")
        if device != "cpu" and gpus is None:
            gpus = cuda_device_count()
        if not device:
            device = "cuda" if gpus else "cpu"
        gpus = (gpus or 0) if device == "cuda" else 0
        if device == "cuda" and gpus == 0:
            raise ConfigError("DOGBREED_DEVICE=cuda but no CUDA device is visible")

        torch_threads = _int(env, ("DOGBREED_TORCH_THREADS",), 0, minimum=0)
        worker_names = ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS")
        if device == "cuda":
            default_workers = gpus
        else:
            default_workers = max(1, cpus // torch_threads) if torch_threads else 1
        workers = _int(env, worker_names, default_workers)
        if not torch_threads:
            torch_threads = max(1, cpus // workers)
        if device == "cpu" and torch_threads * workers > cpus:
            raise ConfigError(
                f"{workers} workers x {torch_threads} torch threads oversubscribe {cpus} CPUs: "
                "lower MODEL_SERVER_WORKERS or DOGBREED_TORCH_THREADS"
            )

        # On CPU the default depends on the model's image size: the worker picks it (cpu_batch_size).
        max_batch_size = _int(env, ("DOGBREED_MAX_BATCH_SIZE",), 32 if device == "cuda" else 0)
        payload_mb = _int(env, ("SAGEMAKER_MAX_PAYLOAD_IN_MB",), DEFAULT_MAX_PAYLOAD_MB)
        if payload_mb > MAX_PAYLOAD_MB_LIMIT:
            raise ConfigError(
                f"SAGEMAKER_MAX_PAYLOAD_IN_MB must be <= {MAX_PAYLOAD_MB_LIMIT}, got {payload_mb}"
            )
        timeout_names = ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT")
        port = _int(env, ("SAGEMAKER_BIND_TO_PORT",), 8080)
        if port > 65535:
            raise ConfigError(f"SAGEMAKER_BIND_TO_PORT must be a TCP port, got {port}")
        timeout_s = _int(env, timeout_names, DEFAULT_TIMEOUT_S)
        max_queue_wait_s = _float(env, "DOGBREED_MAX_QUEUE_WAIT_S", timeout_s / 2)
        if not 0 < max_queue_wait_s < timeout_s:
            raise ConfigError(
                f"DOGBREED_MAX_QUEUE_WAIT_S must be above 0 and below the {timeout_s}s request "
                f"timeout, got {max_queue_wait_s:g}"
            )
        return cls(
            model_dir=Path(env.get("SM_MODEL_DIR") or "/opt/ml/model"),
            host=env.get("DOGBREED_BIND_HOST", "").strip() or "0.0.0.0",
            port=port,
            device=device,
            gpus=gpus,
            workers=workers,
            threads=_int(env, ("DOGBREED_THREADS_PER_WORKER",), DEFAULT_THREADS),
            torch_threads=torch_threads,
            preprocess_on_requests=_preprocess_on_requests(env, device),
            decode_threads=_int(env, ("DOGBREED_DECODE_THREADS",), torch_threads),
            timeout_s=timeout_s,
            max_queue_wait_s=max_queue_wait_s,
            graceful_timeout_s=_int(
                env, ("DOGBREED_GRACEFUL_TIMEOUT",), DEFAULT_GRACEFUL_TIMEOUT_S
            ),
            keepalive_s=_int(env, ("DOGBREED_KEEPALIVE",), 5),
            max_payload_bytes=payload_mb * MIB,
            max_image_pixels=_int(env, ("DOGBREED_MAX_IMAGE_PIXELS",), DEFAULT_MAX_IMAGE_PIXELS),
            max_batch_size=max_batch_size or None,
            max_batch_wait_s=_float(env, "DOGBREED_MAX_BATCH_WAIT_MS", 5.0) / 1000,
            default_top_k=_int(env, ("DOGBREED_DEFAULT_TOP_K",), 5),
            max_images_per_request=_int(env, ("DOGBREED_MAX_IMAGES_PER_REQUEST",), 256),
            warmup_rounds=_int(env, ("DOGBREED_WARMUP_ROUNDS",), 1, minimum=0),
        )
