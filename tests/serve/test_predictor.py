"""The predictor in process: both places to preprocess give the same answers and the same errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dogbreed.artifact import load_spec
from dogbreed.serve.app import build_predictor
from dogbreed.serve.config import ServerSettings, cpu_batch_size
from dogbreed.serve.predictor import InputError, Predictor
from dogbreed.serve.server import check_model_dir
from dogbreed.serve.torch_runtime import TorchRuntime

from .conftest import jpeg_bytes


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [jpeg_bytes(seed, size=(40 + seed, 30 + 2 * seed)) for seed in range(12)]


@pytest.mark.parametrize("on_requests", [False, True])
def test_concurrent_predictions_match_one_at_a_time(
    model_dir: Path, images: list[bytes], on_requests: bool
) -> None:
    spec = load_spec(model_dir)
    predictor = Predictor(
        TorchRuntime(model_dir, spec, "cpu", threads=1),
        spec,
        max_batch_size=4,
        max_image_pixels=1_000_000,
        preprocess_on_requests=on_requests,
        decode_slots=2,
    )
    alone = [predictor.probabilities([data])[0] for data in images]
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda data: predictor.probabilities([data])[0], images))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    assert predictor.batches_run < predictor.batcher.items_run  # some were batched
    batch = predictor.probabilities(images[:3])
    np.testing.assert_allclose(batch, np.stack(alone[:3]), atol=1e-5, rtol=1e-4)

    with pytest.raises(InputError, match=r"images\[1\]"):
        predictor.probabilities([images[0], b"junk", images[2]], ["images[0]", "images[1]", "x"])
    predictor.stop()


@pytest.mark.parametrize("batch_setting", ["", "3"])
def test_the_workers_batch_is_the_one_the_master_resolved(
    model_dir: Path, batch_setting: str
) -> None:
    env = {"SM_MODEL_DIR": str(model_dir), "DOGBREED_MAX_BATCH_SIZE": batch_setting}
    settings = check_model_dir(ServerSettings.from_env(env, cpus=1, gpus=0))  # as the master does
    predictor = build_predictor(settings, "cpu")  # as each worker does
    expected = int(batch_setting or cpu_batch_size(load_spec(model_dir).image_size))
    assert predictor.max_batch_size == settings.batch_size == expected
    predictor.stop()
