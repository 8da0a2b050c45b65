"""ImageFolder splits on disk: located, scanned, checked; unreadable files skipped and counted.

Which channel or folder is which split is :mod:`dogbreed.splits`' rule (SageMaker channels under
``input/data/``: ``train``, ``valid`` and ``test``, or one ``training`` channel holding
``train/ valid/ test/``). The class list must agree across splits. Too many unreadable files, or a
missing or empty split, raise :class:`DataError` with what was expected and what was found. Needs
Pillow, not torch: the training job and the export process both read their data through it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dogbreed.contract import IMAGE_SUFFIXES
from dogbreed.splits import class_label, locate_splits

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The input data does not have the expected shape."""


def _folder_names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def find_split_dirs(channels: Mapping[str, Path]) -> dict[str, Path]:
    """Map each split to its folder from the job's channels (:mod:`dogbreed.splits`' rule)."""
    located = locate_splits(channels, _folder_names, lambda root, name: root / name)
    if located.missing:
        raise DataError(
            f"missing split(s) {', '.join(located.missing)}: expected channels train, valid (or"
            f" validation) and test, or one 'training' channel holding train/ valid/ test/; found"
            f" channels {sorted(channels) or 'none'}"
            + (f" and in 'training': {sorted(located.inside)}" if located.root else "")
        )
    return located.found


@dataclass(frozen=True)
class Split:
    """One split's readable files, with the bad ones counted."""

    name: str
    root: Path
    class_folders: list[str]
    samples: list[tuple[Path, int]]
    bad_files: list[tuple[Path, str]]


def _check_image(path: Path) -> str | None:
    """None when ``path`` opens as an image; else the reason it does not."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises many types for bad files
        return f"{type(exc).__name__}: {exc}"
    return None


def scan_split(name: str, root: Path) -> Split:
    """List class folders and check every file; raise when the split is empty."""
    class_folders = sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not class_folders:
        raise DataError(
            f"split '{name}' at {root} has no class folders (expected e.g. 001.Affenpinscher/)"
        )
    samples: list[tuple[Path, int]] = []
    bad: list[tuple[Path, str]] = []
    for index, folder in enumerate(class_folders):
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            reason = _check_image(path)
            if reason is None and path.suffix.lower() not in IMAGE_SUFFIXES:
                reason = f"unsupported file type {path.suffix or '(none)'}"
            if reason is None:
                samples.append((path, index))
            else:
                bad.append((path, reason))
    if not samples:
        raise DataError(
            f"split '{name}' at {root} has no readable images in {len(class_folders)} class folders"
            f" ({len(bad)} unreadable files)"
        )
    return Split(name, root, class_folders, samples, bad)


def check_classes(splits: Sequence[Split]) -> list[str]:
    """The class labels, identical across splits; else a DataError naming the differences."""
    reference = splits[0]
    for split in splits[1:]:
        if split.class_folders != reference.class_folders:
            only_ref = sorted(set(reference.class_folders) - set(split.class_folders))
            only_this = sorted(set(split.class_folders) - set(reference.class_folders))
            raise DataError(
                f"class folders differ between '{reference.name}' and '{split.name}': "
                f"only in {reference.name}: {only_ref or 'none'}; only in {split.name}: "
                f"{only_this or 'none'}"
                + ("" if only_ref or only_this else " (same names, different order)")
            )
    return [class_label(f) for f in reference.class_folders]


def check_bad_fraction(splits: Sequence[Split], max_bad_fraction: float) -> None:
    """Log skipped files per split; raise when a split's bad fraction exceeds the limit."""
    for split in splits:
        total = len(split.samples) + len(split.bad_files)
        if not split.bad_files:
            continue
        log.warning(
            "split %s: skipping %d of %d files that are not readable images",
            split.name,
            len(split.bad_files),
            total,
        )
        for path, reason in split.bad_files[:10]:
            log.warning("  skipped %s (%s)", path, reason)
        fraction = len(split.bad_files) / total
        if fraction > max_bad_fraction:
            raise DataError(
                f"split '{split.name}': {len(split.bad_files)} of {total} files"
                f" ({fraction:.1%}) are not readable images, above max-bad-fraction"
                f" {max_bad_fraction:.1%}; first: {split.bad_files[0][0]} ({split.bad_files[0][1]})"
            )
