"""Data: channel layouts, dogImages labels, class agreement, bad files and missing splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dogbreed.image_folders import DataError, check_classes, find_split_dirs, scan_split
from dogbreed.splits import class_label


def test_class_label_strips_the_dogimages_number() -> None:
    assert class_label("001.Affenpinscher") == "Affenpinscher"
    assert class_label("133.Yorkshire_terrier") == "Yorkshire_terrier"
    assert class_label("beagle") == "beagle"


def test_one_training_channel_or_one_channel_per_split(tmp_path: Path) -> None:
    for split in ("train", "valid", "test"):
        (tmp_path / "training" / split).mkdir(parents=True)
        (tmp_path / split).mkdir()
    (tmp_path / "validation").mkdir()
    found = find_split_dirs({"training": tmp_path / "training"})
    assert found == {s: tmp_path / "training" / s for s in ("train", "valid", "test")}
    channels = {
        "train": tmp_path / "train",
        "validation": tmp_path / "validation",
        "test": tmp_path / "test",
    }
    assert find_split_dirs(channels)["valid"] == tmp_path / "validation"


def test_missing_split_names_what_was_expected_and_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing split\(s\) test: expected channels train, valid"):
        find_split_dirs({"train": tmp_path, "valid": tmp_path})


def test_class_mismatch_names_the_differing_classes(sample_dir: Path, tmp_path: Path) -> None:
    valid = tmp_path / "valid"
    shutil.copytree(sample_dir / "valid", valid)
    shutil.move(valid / "004.Akita", valid / "004.Basenji")
    with pytest.raises(DataError) as info:
        check_classes([scan_split("train", sample_dir / "train"), scan_split("valid", valid)])
    assert "only in train: ['004.Akita']; only in valid: ['004.Basenji']" in str(info.value)


def test_corrupt_and_non_image_files_are_skipped_and_counted(
    sample_dir: Path, tmp_path: Path
) -> None:
    train = tmp_path / "train"
    shutil.copytree(sample_dir / "train", train)
    (train / "001.Affenpinscher" / "notes.txt").write_text("not an image")
    good = next((train / "002.Afghan_hound").glob("*.jpg"))
    (train / "002.Afghan_hound" / "broken.jpg").write_bytes(good.read_bytes()[:40])
    split = scan_split("train", train)
    assert len(split.samples) == 40
    assert sorted(p.name for p, _ in split.bad_files) == ["broken.jpg", "notes.txt"]


def test_too_many_bad_files_fail_the_job(make_job) -> None:
    job = make_job()
    folder = job.base / "input" / "data" / "training" / "train" / "001.Affenpinscher"
    for n in range(6):
        (folder / f"bad{n}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = job.run()
    assert result.returncode == 1
    failure = job.failure()
    assert "split 'train': 6 of 46 files (13.0%) are not readable images" in failure
    assert "max-bad-fraction 5.0%" in failure
    assert not job.model_dir.exists()


def test_a_few_bad_files_are_skipped_and_logged(make_job) -> None:
    job = make_job({"epochs": "1", "max-bad-fraction": "0.1"})
    folder = job.base / "input" / "data" / "training" / "train" / "001.Affenpinscher"
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = job.run()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "split train: skipping 1 of 41 files that are not readable images" in result.stdout


def test_missing_split_fails_the_job_with_a_failure_file(make_job) -> None:
    job = make_job()
    shutil.rmtree(job.base / "input" / "data" / "training" / "test")
    result = job.run()
    assert result.returncode == 1
    failure = job.failure()
    assert failure.startswith("DataError: missing split(s) test")
    assert "found channels ['training'] and in 'training': ['train', 'valid']" in failure


def test_empty_split_fails_the_job(make_job) -> None:
    job = make_job()
    valid = job.base / "input" / "data" / "training" / "valid"
    for image in valid.rglob("*.jpg"):
        image.unlink()
    result = job.run()
    assert result.returncode == 1
    assert (
        "split 'valid'" in job.failure()
        and "has no readable images in 4 class folders" in job.failure()
    )
