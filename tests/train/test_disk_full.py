"""A full disk is named as the cause, and the file it was replacing survives.

Each test mounts a real tmpfs of a few MiB (root only: CI runs as root) and writes past its end,
as a checkpoint does on a training volume that is too small. Before, a checkpoint on a full disk
failed with torch.save's "[enforce fail at inline_container.cc:672] . unexpected pos 35344000 vs
35343896", which names neither the disk nor the file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from dogbreed.atomic import DiskFullError, write_atomically


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path, str], Path]]:
    """``mount(path, size)``: a tmpfs of ``size`` (tmpfs syntax: "2m") at ``path``.

    It asks for tmp_path so that it unmounts before tmp_path's folder is removed.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            message = f"mount failed: {result.stderr.strip()}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        # --lazy: a failed write's exception can still hold its file open
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=30, check=True)


def test_text_that_does_not_fit_names_the_disk_and_keeps_the_old_file(
    small_disk, tmp_path: Path
) -> None:
    disk = small_disk(tmp_path / "disk", "1m")
    target = disk / "failure"
    write_atomically(target, lambda tmp: tmp.write_text("the old message"))
    with pytest.raises(DiskFullError) as raised:
        write_atomically(target, lambda tmp: tmp.write_bytes(b"x" * (2 << 20)))
    message = str(raised.value)
    assert f"no space left on the device holding {disk} to write failure" in message
    assert "bytes are free" in message and "No space left on device" in message
    assert target.read_text() == "the old message"
    assert sorted(p.name for p in disk.iterdir()) == ["failure"], "a partial file was left"


def test_torch_save_that_does_not_fit_names_the_disk_and_keeps_the_old_checkpoint(
    small_disk, tmp_path: Path
) -> None:
    disk = small_disk(tmp_path / "disk", "2m")
    target = disk / "checkpoint.pt"
    small = torch.arange(1000, dtype=torch.float32)
    write_atomically(target, lambda tmp: torch.save({"weights": small}, tmp))
    large = torch.zeros(1 << 20)  # 4 MiB
    with pytest.raises(DiskFullError) as raised:
        write_atomically(target, lambda tmp: torch.save({"weights": large}, tmp))
    message = str(raised.value)
    assert "to write checkpoint.pt" in message and "RuntimeError" in message
    assert torch.equal(torch.load(target)["weights"], small)
    assert sorted(p.name for p in disk.iterdir()) == ["checkpoint.pt"]


def test_other_errors_on_a_roomy_disk_pass_through_unchanged(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        raise ValueError("not a disk problem")

    with pytest.raises(ValueError, match="not a disk problem"):
        write_atomically(tmp_path / "file", fail)
    assert list(tmp_path.iterdir()) == []


def test_a_job_whose_checkpoints_do_not_fit_fails_naming_the_volume(small_disk, make_job) -> None:
    job = make_job({"epochs": "1"})
    small_disk(job.checkpoints, "4m")  # a ResNet18 checkpoint is tens of MB
    result = job.run()
    assert result.returncode != 0, result.stdout[-2000:]
    failure = job.failure()
    assert failure.startswith(f"DiskFull: no space left on the device holding {job.checkpoints}")
    assert "--volume-gb" in failure and "volume_size" in failure
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
