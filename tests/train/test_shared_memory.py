"""Training fits the shared memory it gets: the plan, and real jobs under a small /dev/shm."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.train.loader import SHM_SHARE, plan_transit

MB = 1_000_000
TRAIN = str(Path(sys.executable).with_name("train"))  # the toolkit's console script
DOCKER_DEFAULT_SHM = 64 * 1024 * 1024
DIGEST = re.compile(r"final weights sha256=([0-9a-f]+)")


@pytest.mark.parametrize("batch", [32, 64, 128, 256, 512])
@pytest.mark.parametrize("ranks", [1, 2, 8])
def test_the_whole_hpo_batch_range_fits_dockers_default_shm(batch: int, ranks: int) -> None:
    plan, reason = plan_transit(batch, 224, 1, ranks, DOCKER_DEFAULT_SHM)
    assert plan.shm_needed <= SHM_SHARE * DOCKER_DEFAULT_SHM, plan.describe(reason)
    assert plan.workers >= 1, plan.describe(reason)  # still loading in parallel, not in-process
    assert plan.pieces_per_batch * plan.piece >= batch
    line = plan.describe(reason)
    assert f"batches of {batch} cross as uint8" in line and "MB free on /dev/shm" in line


def test_ample_shm_sends_whole_batches_with_the_default_prefetch() -> None:
    plan, reason = plan_transit(512, 224, 3, 1, 8 * 1024 * MB)
    assert (plan.piece, plan.workers, plan.prefetch) == (512, 3, 2), reason


def test_shm_too_small_for_any_piece_loads_in_the_training_process() -> None:
    plan, reason = plan_transit(64, 224, 1, 1, 1 * MB)
    assert plan.workers == 0 and plan.shm_needed == 0
    assert "--shm-size" in reason


def _run_under_shm(job, size: str) -> subprocess.CompletedProcess:
    """The job's toolkit entry in a private mount namespace with a ``size`` tmpfs on /dev/shm."""
    mount = f'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$0"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, TRAIN],
        env=job.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_batches_split_for_a_tiny_shm_train_exactly_as_whole_ones(make_job) -> None:
    hp = {"epochs": "1", "batch-size": "64", "workers": "2", "seed": "3"}
    whole, split = make_job(hp), make_job(hp)
    reference = whole.run()
    assert reference.returncode == 0, reference.stdout[-3000:]
    assert "cross as uint8 in 1 piece(s) of <= 64" in reference.stdout

    result = _run_under_shm(split, "1m")  # 1 MiB: a 64 px batch of 64 is 0.8 MB as uint8
    if "unshare failed" in result.stdout or "Operation not permitted" in result.stdout:
        pytest.skip(f"cannot mount a private /dev/shm here: {result.stdout[-300:]}")
    assert result.returncode == 0, result.stdout[-3000:]
    plan = re.search(r"data loading: 2 loader process\(es\) .* in (\d+) piece\(s\)", result.stdout)
    assert plan and int(plan.group(1)) > 1, result.stdout[-3000:]
    assert "of 1.0 MB free on /dev/shm" in result.stdout
    assert DIGEST.findall(result.stdout) == DIGEST.findall(reference.stdout) != []
