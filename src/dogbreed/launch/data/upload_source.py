"""What ``dogbreed upload`` sends: a zip or a folder of splits, its layout checked before any upload.

Accepted: ``dogImages.zip`` (``dogImages/train|valid|test/<class>/<image>``), a folder of that
layout, or a zip or folder whose root holds the splits directly. A split may go by any name the
trainer reads (``validation/`` for ``valid/``, the rule of :mod:`dogbreed.splits`); its
files are sent under the split's own name. Junk that archivers and desktops add (``__MACOSX/``,
``.DS_Store``, ``._*`` AppleDouble files, other hidden files, ``Thumbs.db``) is skipped and
counted, as the trainer skips it; every other problem is listed and nothing is sent.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dogbreed.contract import IMAGE_SUFFIXES, SPLITS
from dogbreed.launch.errors import LaunchError
from dogbreed.splits import SPLIT_NAMES, names_present

#: Names that are junk wherever they appear, besides anything starting with ``.``.
JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
SHOWN = 10  # names shown per problem
MB = 1e6

Parts = tuple[str, ...]


@dataclass(frozen=True)
class SourceFile:
    """One image: ``key`` under the S3 prefix (``train/001.Affenpinscher/x.jpg``), ``name`` in
    the source."""

    key: str
    name: str
    size: int


@dataclass(frozen=True)
class DataSource:
    """A checked data set and how to read each file's bytes."""

    location: str
    files: tuple[SourceFile, ...]
    classes: tuple[str, ...]
    junk: int
    read: Callable[[SourceFile], bytes]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def summary(self) -> str:
        counts = {split: 0 for split in SPLITS}
        for file in self.files:
            counts[file.key.split("/", 1)[0]] += 1
        per_split = ", ".join(f"{split} {count}" for split, count in counts.items())
        return (
            f"{self.location}: {len(self.classes)} classes, {len(self.files)} images "
            f"({per_split}), {self.size / MB:.1f} MB; skipped {self.junk} junk files "
            "(__MACOSX/, .DS_Store, ._*, hidden, Thumbs.db)"
        )


@contextmanager
def open_source(path: Path) -> Iterator[DataSource]:
    """The checked data set in the zip or folder at ``path``; a zip stays open while in use."""
    if path.is_dir():
        entries = [
            (p.relative_to(path).as_posix(), p.stat().st_size if p.is_file() else None)
            for p in sorted(path.rglob("*"))
        ]
        yield scan(str(path), entries, lambda file: (path / file.name).read_bytes())
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            entries = [
                (i.filename, None if i.is_dir() else i.file_size) for i in archive.infolist()
            ]
            yield scan(str(path), entries, lambda file: archive.read(file.name))
    else:
        what = "is not a zip file" if path.exists() else "does not exist"
        raise LaunchError(
            f"{path} {what}: give dogImages.zip or a folder holding train/ valid/ test/"
        )


def is_junk(parts: Parts) -> bool:
    return any(part in JUNK_NAMES or part.startswith(".") for part in parts)


def junk_depth(parts: Parts) -> int:
    """How many parts up to the first junk one: a folder holding only junk is still a folder."""
    return next(i for i, part in enumerate(parts) if is_junk((part,)))


def scan(
    location: str, entries: Iterable[tuple[str, int | None]], read: Callable[[SourceFile], bytes]
) -> DataSource:
    """Check ``entries`` (path, size; None for a folder) and name the files to send.

    Raises LaunchError listing every problem: no splits, a missing or doubled split, files
    outside class folders, non-image files, empty class folders, class folders that differ.
    """
    files: dict[Parts, tuple[str, int]] = {}
    folders: set[Parts] = set()
    junk = 0
    for name, size in entries:
        parts = PurePosixPath(name).parts
        if is_junk(parts):
            junk += size is not None
            folders.update(parts[:depth] for depth in range(1, junk_depth(parts) + 1))
        elif size is None:
            folders.add(parts)
        else:
            files[parts] = (name, size)
    folders |= {parts[:depth] for parts in files for depth in range(1, len(parts))}
    root = find_root(location, folders, files)
    files = {parts[len(root) :]: value for parts, value in files.items()}
    folders = {parts[len(root) :] for parts in folders if len(parts) > len(root)}
    problems, split_folders = locate(folders, files)
    classes = {}
    for split, folder in split_folders.items():
        classes[split] = check_split(folder, folders, files, problems)
    problems += class_differences(classes)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise LaunchError(f"{location}: nothing uploaded, the data set has problems:\n{listed}")
    renamed = {folder: split for split, folder in split_folders.items()}
    chosen = [
        SourceFile("/".join((renamed[parts[0]], *parts[1:])), name, size)
        for parts, (name, size) in files.items()
    ]
    return DataSource(
        location=location,
        files=tuple(sorted(chosen, key=lambda file: file.key)),
        classes=tuple(sorted(classes["train"])),
        junk=junk,
        read=read,
    )


def find_root(location: str, folders: set[Parts], files: dict[Parts, object]) -> Parts:
    """``()`` when the splits are at the top, ``(name,)`` when they are in its only folder."""
    top = {parts[0] for parts in folders if len(parts) == 1}
    if top & SPLIT_NAMES:
        return ()
    if len(top) == 1 and not any(len(parts) == 1 for parts in files):
        (only,) = top
        if {parts[1] for parts in folders if len(parts) == 2 and parts[0] == only} & SPLIT_NAMES:
            return (only,)
    found = sorted(top | {parts[0] for parts in files if len(parts) == 1})
    raise LaunchError(
        f"{location}: no train/ valid/ test/ at its top or in its only folder (found "
        f"{shown(found) or 'nothing'}): expected dogImages/train/001.Affenpinscher/*.jpg ..."
    )


def locate(folders: set[Parts], files: dict[Parts, object]) -> tuple[list[str], dict[str, str]]:
    """Each split's folder, and the problems at the top: missing, doubled or unknown entries."""
    top = {parts[0] for parts in folders if len(parts) == 1}
    problems, found = [], {}
    for split, present in names_present(top).items():
        if not present:
            problems.append(f"no {split} split: expected a {split}/ folder of class folders")
        elif len(present) > 1:
            problems.append(f"{split} split twice: {', '.join(present)}; keep one")
        else:
            found[split] = present[0]
    others = sorted(top - SPLIT_NAMES) + sorted(p[0] for p in files if len(p) == 1)
    if others:
        problems.append(f"not a split (remove, or move into one): {shown(others)}")
    return problems, found


def check_split(
    folder: str, folders: set[Parts], files: dict[Parts, object], problems: list[str]
) -> set[str]:
    """The split's class folders; its problems (stray files, non-images, empty classes) added."""
    classes = {parts[1] for parts in folders if len(parts) == 2 and parts[0] == folder}
    inside = [parts for parts in files if parts[0] == folder]
    stray = ["/".join(parts) for parts in inside if len(parts) == 2]
    if stray:
        problems.append(f"files outside class folders in {folder}/: {shown(stray)}")
    others = ["/".join(p) for p in inside if len(p) > 2 and not is_image(p[-1])]
    if others:
        problems.append(
            f"{len(others)} non-image files in {folder}/ (images end in "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}): {shown(others)}"
        )
    holding = {parts[1] for parts in inside if len(parts) > 2 and is_image(parts[-1])}
    empty = sorted(classes - holding)
    if empty:
        problems.append(f"class folders without images in {folder}/: {shown(empty)}")
    if not classes:
        problems.append(f"no class folders in {folder}/ (expected e.g. 001.Affenpinscher/)")
    return classes


def is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def class_differences(classes: dict[str, set[str]]) -> list[str]:
    if "train" not in classes:
        return []
    reference = classes["train"]
    problems = []
    for split, names in classes.items():
        if names != reference:
            problems.append(
                f"class folders differ between train and {split}: only in train: "
                f"{shown(sorted(reference - names)) or 'none'}; only in {split}: "
                f"{shown(sorted(names - reference)) or 'none'}"
            )
    return problems


def shown(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more
