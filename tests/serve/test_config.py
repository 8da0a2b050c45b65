"""Settings from the environment: SageMaker's variables, defaults from the hardware, bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dogbreed.serve.config import (
    MMAP_CEILING_BYTES,
    ConfigError,
    ServerSettings,
    cpu_batch_size,
    removed_settings_in,
    stem_activation_bytes,
)
from dogbreed.serve.runtime import ModelChoice
from dogbreed.serve.tuning import THREADS_PER_WORKER

CHOICE = ModelChoice("onnx", Path("/models/x/model.onnx"))


def settings(env: dict[str, str], cpus: int = 8, gpus: int = 0) -> ServerSettings:
    return ServerSettings.from_env(env, cpus=cpus, gpus=gpus)


def for_model(s: ServerSettings, image_size: int = 224) -> ServerSettings:
    """``s`` as the master resolves it for a model of ``image_size`` px."""
    return s.for_model(Path("/models/x"), image_size, CHOICE)


def test_defaults_follow_sagemaker() -> None:
    s = settings({})
    assert s.model_dir == Path("/opt/ml/model")
    assert (s.host, s.port) == ("0.0.0.0", 8080)
    assert s.max_payload_bytes == 6_291_456
    assert s.max_payload_mb == 6
    assert s.timeout_s == 60


def test_cpu_default_is_one_worker_using_every_core() -> None:
    s = settings({}, cpus=8)
    assert (s.device, s.workers, s.torch_threads, s.decode_threads) == ("cpu", 1, 8, 8)
    assert s.max_batch_size is None  # the batch follows the model's image size


@pytest.mark.parametrize("image_size", [64, 224, 448])
def test_the_master_resolves_the_cpu_batch_from_the_models_image_size(image_size: int) -> None:
    s = for_model(settings({}), image_size)
    assert s.batch_size == s.max_batch_size == cpu_batch_size(image_size)
    assert (s.model_dir, s.model_choice) == (Path("/models/x"), CHOICE)
    # execution-parameters: workers x max(8, the resolved batch), e.g. 1 x 8 at 224 px.
    assert s.max_concurrent_transforms == s.workers * max(8, cpu_batch_size(image_size))


def test_a_set_or_gpu_batch_size_is_kept_whatever_the_image_size() -> None:
    assert for_model(settings({"DOGBREED_MAX_BATCH_SIZE": "3"}), 64).batch_size == 3
    assert for_model(settings({}, cpus=16, gpus=4), 64).batch_size == 32


def test_the_cpu_batch_size_is_unknown_until_resolved_for_the_model() -> None:
    with pytest.raises(ConfigError, match="for_model"):
        settings({}).batch_size  # noqa: B018


def test_every_connection_of_a_spike_gets_a_thread_and_some_stay_free() -> None:
    s = settings({})
    assert s.max_waiting_requests >= 512  # a 512-client spike queues; the other threads stay free
    assert s.worker_connections == 2 * s.threads  # as many again kept alive while idle
    assert s.max_waiting_requests == s.threads - s.threads // 16
    assert s.max_queue_wait_s == s.timeout_s / 2
    assert dataclasses.replace(s, threads=1).max_waiting_requests == 1  # under a low ulimit -n


@pytest.mark.parametrize(
    ("image_size", "batch"), [(64, 16), (160, 16), (224, 8), (320, 4), (448, 2), (1024, 1)]
)
def test_cpu_batches_keep_the_largest_activation_under_glibcs_mmap_ceiling(
    image_size: int, batch: int
) -> None:
    assert cpu_batch_size(image_size) == batch
    assert batch == 1 or batch * stem_activation_bytes(image_size) <= MMAP_CEILING_BYTES


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (8, 3), (16, 4), (4, 4)])
def test_torch_threads_times_workers_never_exceed_cores(cpus: int, workers: int) -> None:
    s = settings({"MODEL_SERVER_WORKERS": str(workers)}, cpus=cpus)
    assert s.workers == workers
    assert s.torch_threads >= 1
    assert s.torch_threads * s.workers <= cpus


def test_torch_threads_choose_the_worker_count() -> None:
    s = settings({"DOGBREED_TORCH_THREADS": "2"}, cpus=8)
    assert (s.workers, s.torch_threads) == (4, 2)


def test_oversubscription_is_refused() -> None:
    with pytest.raises(ConfigError, match="oversubscribe 4 CPUs"):
        settings({"MODEL_SERVER_WORKERS": "3", "DOGBREED_TORCH_THREADS": "2"}, cpus=4)


def test_sagemaker_names_win_over_the_sample_names() -> None:
    env = {
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        "MODEL_SERVER_WORKERS": "4",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
        "MODEL_SERVER_TIMEOUT": "90",
    }
    s = settings(env)
    assert (s.workers, s.timeout_s) == (2, 30)
    assert settings({"MODEL_SERVER_TIMEOUT": "90"}).timeout_s == 90


def test_gpu_default_is_one_worker_per_device() -> None:
    s = settings({}, cpus=16, gpus=4)
    assert (s.device, s.workers, s.torch_threads) == ("cuda", 4, 4)
    assert s.max_batch_size == 32


def test_environment_overrides() -> None:
    s = settings(
        {
            "SM_MODEL_DIR": "/models/x",
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
            "DOGBREED_MAX_BATCH_SIZE": "8",
            "DOGBREED_MAX_QUEUE_WAIT_S": "2.5",
            "MODEL_SERVER_WORKERS": "2",
        }
    )
    assert s.model_dir == Path("/models/x")
    assert s.port == 9000
    assert s.max_payload_bytes == 20 * 1024 * 1024
    assert (s.max_batch_size, s.max_queue_wait_s) == (8, 2.5)
    assert s.threads == THREADS_PER_WORKER
    # 2 x 8 would keep both workers' batches full, but 16 x 20 MB breaks SageMaker's rule
    # MaxConcurrentTransforms x MaxPayloadInMB <= 100.
    assert s.max_concurrent_transforms == 100 // 20


def test_an_asynchronous_endpoints_payload_limit_keeps_batch_transforms_rule() -> None:
    s = for_model(ServerSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1024"}, cpus=2, gpus=0))
    assert s.max_payload_bytes == 1024 * 1024 * 1024
    assert (s.batch_payload_mb, s.max_concurrent_transforms) == (100, 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_SERVER_WORKERS": "many"}, "MODEL_SERVER_WORKERS must be an integer, got 'many'"),
        ({"MODEL_SERVER_WORKERS": "0"}, "MODEL_SERVER_WORKERS must be >= 1"),
        ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1025"}, "must be <= 1024 (an asynchronous endpoint"),
        ({"DOGBREED_RUNTIME": "tensorflow"}, "DOGBREED_RUNTIME must be one of auto, onnx, torch"),
        ({"DOGBREED_PRECISION": "int4"}, "DOGBREED_PRECISION must be one of auto, int8, fp32"),
        ({"SAGEMAKER_BIND_TO_PORT": "70000"}, "TCP port"),
        ({"DOGBREED_MAX_QUEUE_WAIT_S": "nan"}, "finite number"),
        ({"DOGBREED_MAX_QUEUE_WAIT_S": "-1"}, "finite number >= 0"),
        ({"DOGBREED_TORCH_THREADS": "-1"}, "DOGBREED_TORCH_THREADS must be >= 0"),
        ({"DOGBREED_MAX_QUEUE_WAIT_S": "60"}, "below the 60s request timeout"),
        ({"DOGBREED_MAX_QUEUE_WAIT_S": "0"}, "above 0"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        settings(env)


def test_gpu_count_never_initialises_cuda_in_this_process() -> None:
    from dogbreed.serve.config import cuda_device_count

    cuda_device_count()
    import torch

    assert not torch.cuda.is_initialized()


def test_removed_variables_are_named_not_refused() -> None:
    env = {"DOGBREED_MAX_BATCH_WAIT_MS": "2", "DOGBREED_BIND_HOST": "127.0.0.1"}
    s = settings(env)
    assert s == settings({})  # ignored
    warnings = removed_settings_in(env)
    assert [w.split()[0] for w in warnings] == ["DOGBREED_BIND_HOST", "DOGBREED_MAX_BATCH_WAIT_MS"]
    assert "--host" in warnings[0] and "5 ms" in warnings[1]
    assert removed_settings_in({"MODEL_SERVER_WORKERS": "2"}) == []
