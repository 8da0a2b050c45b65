"""Server settings from the environment, and the constants that tune the rest.

The environment holds SageMaker's settings (model directory, port, workers, timeout, payload) and
four of ours, each a choice that depends on the deployment rather than on this code:
``DOGBREED_TORCH_THREADS`` (cores to leave to other processes), ``DOGBREED_MAX_BATCH_SIZE`` (latency
and memory against throughput on the user's hardware), ``DOGBREED_MAX_QUEUE_WAIT_S`` (how long the
user's clients will wait rather than retry) and, in :mod:`.allocator`, ``DOGBREED_MALLOC`` (a way
out of the tcmalloc preload). docs/serving.md's settings table lists them; a test holds it to this
module. Everything else is internal tuning: the constants in :mod:`.tuning`, each with the measurement that
chose it. Defaults follow the hardware: on CPU one worker per ``DOGBREED_TORCH_THREADS`` cores so
that intra-op threads x workers never exceed the cores this process may use; on GPU one worker per
device (each worker batches for its own device). The batch size on CPU follows the model's image
size: the master resolves it once, with the model it chose (:meth:`ServerSettings.for_model`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dogbreed.child_env import safe_child_env
from dogbreed.contract import (
    ASYNC_MAX_PAYLOAD_MB,
    BATCH_MAX_PAYLOAD_MB,
    MIB,
    MODEL,
    OPT_ML,
    REALTIME_MAX_PAYLOAD_MB,
)
from dogbreed.serve.runtime import PRECISIONS, RUNTIMES, ModelChoice
from dogbreed.serve.tuning import (
    DEFAULT_TOP_K,
    GRACEFUL_TIMEOUT_S,
    KEEPALIVE_S,
    MAX_BATCH_WAIT_S,
    MAX_IMAGE_PIXELS,
    MAX_IMAGES_PER_REQUEST,
    THREADS_PER_WORKER,
    WARMUP_ROUNDS,
)

#: SageMaker waits 60 s for an answer from /invocations.
DEFAULT_TIMEOUT_S = 60
#: Largest forward pass on GPU, where the CPU's mmap-ceiling rule (cpu_batch_size) does not
#: apply: the best batch of bench_serve's in-process pipeline on CPU (benchmarks/README.md); not
#: yet measured on a GPU (make gpu-check reports the server there).
DEFAULT_GPU_MAX_BATCH_SIZE = 32
#: glibc's malloc maps blocks larger than this afresh on every allocation (its mmap threshold's
#: ceiling on 64-bit), so an activation above it page-faults in on every forward pass.
MMAP_CEILING_BYTES = 32 << 20


def stem_activation_bytes(image_size: int) -> int:
    """Bytes of ResNet18's largest activation for one float32 image: the stem's 64 x (size/2)^2."""
    side = -(-image_size // 2)
    return 64 * side * side * 4


def cpu_batch_size(image_size: int, cap: int = 16) -> int:
    """The default CPU batch: the largest power of two (<= ``cap``) whose stem activation stays
    under :data:`MMAP_CEILING_BYTES`; 8 at 224 px.

    Measured on 2 cores at 224 px: batches of 16 (a 51 MB activation) took ~1,770 page faults per
    image, and once the server had run them its batches of 8 slowed down too (concurrency 8:
    60 img/s after a concurrency-16 phase, against 68 with batches capped at 8).
    """
    batch = 1
    while batch * 2 <= cap and batch * 2 * stem_activation_bytes(image_size) <= MMAP_CEILING_BYTES:
        batch *= 2
    return batch


def preprocess_on_request_threads(device: str) -> bool:
    """Where images are decoded and transformed: on the request threads on GPU, overlapping the
    forward pass; on the inference thread on CPU. Measured on 2 cores: with request threads running
    the transform's tensor operations each got its own OpenMP team and a ResNet18 forward pass took
    ~28 ms instead of ~17 ms; decoding as each image joins a forming batch took HTTP concurrency 8
    from 0.92 to 0.95 of the in-process pipeline (docs/serving.md, "How it works")."""
    return device == "cuda"


#: Variables earlier versions read, now internal constants or rules above: a deployment that still
#: sets one gets a warning naming it (removed_settings_in), never a failure.
REMOVED_SETTINGS = {
    "DOGBREED_BIND_HOST": "use --host",
    "DOGBREED_DEVICE": "the device follows the hardware; CUDA_VISIBLE_DEVICES= serves on CPU",
    "DOGBREED_PREPROCESS_ON": "request threads on GPU, the inference thread on CPU",
    "DOGBREED_DECODE_THREADS": "as many as the torch threads",
    "DOGBREED_THREADS_PER_WORKER": f"{THREADS_PER_WORKER}",
    "DOGBREED_GRACEFUL_TIMEOUT": f"{GRACEFUL_TIMEOUT_S} s",
    "DOGBREED_KEEPALIVE": f"{KEEPALIVE_S} s",
    "DOGBREED_MAX_IMAGE_PIXELS": f"{MAX_IMAGE_PIXELS:,}",
    "DOGBREED_MAX_BATCH_WAIT_MS": f"{MAX_BATCH_WAIT_S * 1000:g} ms",
    "DOGBREED_DEFAULT_TOP_K": f"{DEFAULT_TOP_K}; a request sets its own with top_k=N",
    "DOGBREED_MAX_IMAGES_PER_REQUEST": f"{MAX_IMAGES_PER_REQUEST}",
    "DOGBREED_WARMUP_ROUNDS": f"{WARMUP_ROUNDS}",
}


def removed_settings_in(env: Mapping[str, str]) -> list[str]:
    """One warning per removed variable set in ``env``, naming it and what applies instead."""
    return [
        f"{name} is no longer read (ignored): {instead}"
        for name, instead in REMOVED_SETTINGS.items()
        if name in env
    ]


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
            [sys.executable, "-c", count],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env=safe_child_env(os.environ),
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


WORKERS = ("SAGEMAKER_MODEL_SERVER_WORKERS", "MODEL_SERVER_WORKERS")
TIMEOUT = ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "MODEL_SERVER_TIMEOUT")


def workers_and_torch_threads(env: Mapping[str, str], cpus: int, gpus: int) -> tuple[int, int]:
    """Worker processes and intra-op threads per worker, for ``cpus`` cores and ``gpus`` GPUs."""
    torch_threads = _int(env, ("DOGBREED_TORCH_THREADS",), 0, minimum=0)
    cpu_workers = max(1, cpus // torch_threads) if torch_threads else 1
    workers = _int(env, WORKERS, gpus or cpu_workers)
    if not torch_threads:
        torch_threads = max(1, cpus // workers)
    if not gpus and torch_threads * workers > cpus:
        raise ConfigError(
            f"{workers} workers x {torch_threads} torch threads oversubscribe {cpus} CPUs: "
            "lower MODEL_SERVER_WORKERS or DOGBREED_TORCH_THREADS"
        )
    return workers, torch_threads


def max_queue_wait_s(env: Mapping[str, str], timeout_s: int) -> float:
    """Admission's limit on a request's estimated queue wait: half the request timeout by default."""
    wait_s = _float(env, "DOGBREED_MAX_QUEUE_WAIT_S", timeout_s / 2)
    if not 0 < wait_s < timeout_s:
        raise ConfigError(
            f"DOGBREED_MAX_QUEUE_WAIT_S must be above 0 and below the {timeout_s}s request "
            f"timeout, got {wait_s:g}"
        )
    return wait_s


def payload_limit_mb(env: Mapping[str, str]) -> int:
    """The body limit in MiB: real-time's 6 by default, up to an asynchronous request's 1 GB."""
    value = _int(env, ("SAGEMAKER_MAX_PAYLOAD_IN_MB",), REALTIME_MAX_PAYLOAD_MB)
    if value > ASYNC_MAX_PAYLOAD_MB:
        raise ConfigError(
            f"SAGEMAKER_MAX_PAYLOAD_IN_MB must be <= {ASYNC_MAX_PAYLOAD_MB} (an asynchronous "
            f"endpoint's limit), got {value}"
        )
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or choices[0]
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def bind_port(env: Mapping[str, str]) -> int:
    """SageMaker's port: 8080 unless SAGEMAKER_BIND_TO_PORT says otherwise."""
    value = _int(env, ("SAGEMAKER_BIND_TO_PORT",), 8080)
    if value > 65535:
        raise ConfigError(f"SAGEMAKER_BIND_TO_PORT must be a TCP port, got {value}")
    return value


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs, resolved once in the gunicorn master and shared by workers."""

    model_dir: Path
    host: str
    port: int
    device: str  # "cpu" or "cuda"
    gpus: int  # CUDA devices the workers share (0 on CPU)
    workers: int
    torch_threads: int  # intra-op threads per worker
    timeout_s: int
    max_queue_wait_s: float  # admission: shed a request whose estimated queue wait exceeds this
    max_payload_bytes: int
    max_batch_size: int | None  # the setting, GPU's 32, or on CPU None until for_model resolves it
    runtime: str = "auto"  # DOGBREED_RUNTIME: auto, onnx or torch (serve/runtime.py)
    precision: str = "auto"  # DOGBREED_PRECISION: auto, int8 or fp32 (ONNX Runtime)
    model_choice: ModelChoice | None = None  # what the master chose to serve, for the workers
    threads: int = THREADS_PER_WORKER  # request threads per worker (fewer under a low ulimit -n)

    @property
    def max_payload_mb(self) -> int:
        return self.max_payload_bytes // MIB

    @property
    def preprocess_on_requests(self) -> bool:
        return preprocess_on_request_threads(self.device)

    @property
    def decode_threads(self) -> int:
        """Request threads of a worker that may decode at once (bounds memory on GPU)."""
        return self.torch_threads

    @property
    def worker_connections(self) -> int:
        """Open connections per worker: one per thread, as many again kept alive while idle."""
        return 2 * self.threads

    @property
    def max_waiting_requests(self) -> int:
        """Requests a worker lets wait for inference: all its threads but 1/16, kept for /ping."""
        return max(1, self.threads - max(1, self.threads // 16))

    @property
    def batch_size(self) -> int:
        """Every worker's largest forward pass, once resolved for the model (:meth:`for_model`)."""
        if self.max_batch_size is None:
            raise ConfigError("the CPU batch size follows the model: resolve it with for_model")
        return self.max_batch_size

    @property
    def max_concurrent_transforms(self) -> int:
        """Concurrent requests that keep every worker's batches full (batch transform's hint),
        within SageMaker's rule MaxConcurrentTransforms x MaxPayloadInMB <= 100."""
        wanted = self.workers * max(8, self.batch_size)
        return max(1, min(wanted, BATCH_MAX_PAYLOAD_MB // self.batch_payload_mb))

    @property
    def batch_payload_mb(self) -> int:
        """MaxPayloadInMB for batch transform: the body limit, within batch transform's 100."""
        return max(1, min(self.max_payload_mb, BATCH_MAX_PAYLOAD_MB))

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
        gpus = cuda_device_count() if gpus is None else gpus
        workers, torch_threads = workers_and_torch_threads(env, cpus, gpus)
        # On CPU the default depends on the model's image size: for_model resolves it.
        default_batch = DEFAULT_GPU_MAX_BATCH_SIZE if gpus else 0
        max_batch_size = _int(env, ("DOGBREED_MAX_BATCH_SIZE",), default_batch)
        timeout_s = _int(env, TIMEOUT, DEFAULT_TIMEOUT_S)
        return cls(
            model_dir=Path(env.get("SM_MODEL_DIR") or OPT_ML / MODEL),
            host="0.0.0.0",
            port=bind_port(env),
            device="cuda" if gpus else "cpu",
            gpus=gpus,
            workers=workers,
            torch_threads=torch_threads,
            timeout_s=timeout_s,
            max_queue_wait_s=max_queue_wait_s(env, timeout_s),
            max_payload_bytes=payload_limit_mb(env) * MIB,
            max_batch_size=max_batch_size or None,
            runtime=_choice(env, "DOGBREED_RUNTIME", RUNTIMES),
            precision=_choice(env, "DOGBREED_PRECISION", PRECISIONS),
        )

    def for_model(self, model_dir: Path, image_size: int, choice: ModelChoice) -> ServerSettings:
        """These settings for the model the master chose: where it is, which runtime and file serve
        it, and the batch size (on CPU by default :func:`cpu_batch_size` of its image size)."""
        batch = self.max_batch_size or cpu_batch_size(image_size)
        return dataclasses.replace(
            self, model_dir=model_dir, model_choice=choice, max_batch_size=batch
        )
