"""Nothing hangs: a dead or stopped loader, a dead peer rank, a killed training process and an
out-of-memory step each end the job within a bound, with a failure file naming cause and fix."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import psutil

# Long enough that the job is still training when the fault arrives; 64 px keeps steps fast.
LONG = {"epochs": "200", "log-interval": "1", "workers": "1", "stall-timeout": "10"}
# Seconds from the fault to the job's exit that the docs promise (docs/training.md).
DEATH_BOUND = 30
STALL_BOUND = 10 + 30  # stall-timeout, plus tearing the loaders down


def _signal_a_loader(job, running, signum: int, bound: float) -> tuple[psutil.Process, float]:
    """Once the job trains, send ``signum`` to a loader process; seconds until the job ended."""
    running.wait_for("step 2/", timeout=120)
    (trainer,) = running.training_processes()
    loaders = trainer.children()
    assert loaders, "the training process has no loader processes"
    loaders[0].send_signal(signum)
    took = running.wait_exit(bound)
    assert running.process.returncode != 0
    return loaders[0], took


def test_a_killed_loader_process_ends_the_job_naming_it(make_job, start_job) -> None:
    job = make_job(LONG)
    loader, took = _signal_a_loader(job, start_job(job), signal.SIGKILL, DEATH_BOUND)
    print(f"killed loader: the job ended {took:.1f} s later")
    failure = job.failure()
    assert failure.startswith("LoaderError: a loader process died"), failure
    assert f"pid {loader.pid}" in failure, failure
    assert "out-of-memory killer" in failure and "batch-size" in failure


def test_a_stopped_loader_process_ends_the_job_after_the_stall_timeout(make_job, start_job) -> None:
    job = make_job(LONG)
    loader, took = _signal_a_loader(job, start_job(job), signal.SIGSTOP, STALL_BOUND)
    print(f"stopped loader: the job ended {took:.1f} s later (stall-timeout 10 s)")
    assert took > 9, took
    failure = job.failure()
    assert failure.startswith("LoaderError: no batch came from the loader processes for 10 s"), (
        failure
    )
    assert "stall-timeout" in failure
    assert not loader.is_running() or loader.status() == psutil.STATUS_ZOMBIE, "loader left behind"


def test_a_killed_peer_rank_ends_the_job_naming_the_rank_and_signal(make_job, start_job) -> None:
    job = make_job({**LONG, "workers": "0", "stall-timeout": "20"})
    running = start_job(job, DOGBREED_PROCESSES_PER_HOST="2")
    running.wait_for("[rank 0] dogbreed.train.engine: epoch 1/200 step 2/", timeout=180)
    ranks = {int(p.environ()["RANK"]): p for p in running.training_processes()}
    assert sorted(ranks) == [0, 1], ranks
    ranks[1].send_signal(signal.SIGKILL)
    took = running.wait_exit(DEATH_BOUND)
    print(f"killed peer rank: the job ended {took:.1f} s later")
    assert running.process.returncode != 0
    failure = job.failure()
    assert failure.startswith(f"rank 1 (pid {ranks[1].pid}) was killed by SIGKILL (signal 9)"), (
        failure
    )
    assert "out-of-memory killer" in failure and "other ranks were stopped" in failure


def test_a_training_process_killed_by_sigkill_gets_a_failure_from_the_entry(
    make_job, start_job
) -> None:
    job = make_job(LONG)
    running = start_job(job)
    running.wait_for("step 2/", timeout=120)
    (trainer,) = running.training_processes()
    trainer.send_signal(signal.SIGKILL)
    took = running.wait_exit(DEATH_BOUND)
    print(f"killed training process: the job ended {took:.1f} s later")
    assert running.process.returncode != 0
    failure = job.failure()
    assert failure.startswith("the training process was killed by SIGKILL (signal 9)"), failure
    assert "out-of-memory killer" in failure


INJECT_OOM = textwrap.dedent(
    '''
    """Test-only: every training-mode convolution over a batch of >= 8 images runs out of memory."""
    import torch

    _forward = torch.nn.Conv2d._conv_forward

    def _out_of_memory(self, input, weight, bias):
        if torch.is_grad_enabled() and input.shape[0] >= 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return _forward(self, input, weight, bias)

    torch.nn.Conv2d._conv_forward = _out_of_memory
    '''
)


def test_an_out_of_memory_step_names_batch_image_size_and_what_to_try(
    make_job, tmp_path: Path
) -> None:
    site = tmp_path / "inject"
    site.mkdir()
    (site / "sitecustomize.py").write_text(INJECT_OOM)
    job = make_job({"batch-size": "8", "image-size": "64", "epochs": "1"})
    result = job.run(timeout=180, PYTHONPATH=str(site))
    assert result.returncode != 0, result.stdout[-3000:]
    failure = job.failure()
    assert failure.startswith("OutOfMemory: out of memory on cpu at step 1 (8 images)"), failure
    assert "batch-size 8" in failure and "image-size 64" in failure
    assert "Try batch-size 4 or less" in failure, failure
    assert "Traceback" not in failure
