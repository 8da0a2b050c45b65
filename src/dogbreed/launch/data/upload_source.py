"""What ``dogbreed upload`` sends: a zip or a folder of splits, its layout checked before any upload.

Accepted: ``dogImages.zip`` (``dogImages/train|valid|test/<class>/<image>``), a folder of that
layout, or a zip or folder whose root holds the splits directly. A split may go by any name the
trainer reads (``validation/`` for ``valid/``, the rule of :mod:`dogbreed.splits`); its
files are sent under the split's own name. Junk that archivers and desktops add (``__MACOSX/``,
``.DS_Store``, ``._*`` AppleDouble files, other hidden files, ``Thumbs.db``) is skipped and
counted, as the trainer skips it; every other problem is listed and nothing is sent.

Hostile files: symlinks (to files or folders, in a folder or a zip) are skipped and counted,
never followed; a name that is not UTF-8, holds a control character (newline, ESC, the
right-to-left override...) or would leave its folder (``..``, a leading ``/``) is refused, named
in its escaped form; an image over :data:`dogbreed.archives.MAX_IMAGE_BYTES` is refused, by its
declared size and again while it is read (a zip member's header can lie).
"""

from __future__ import annotations

import os
import stat
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dogbreed.archives import IMAGE_ARCHIVE, read_bounded
from dogbreed.contract import IMAGE_SUFFIXES, SPLITS
from dogbreed.launch.errors import LaunchError
from dogbreed.splits import SPLIT_NAMES, names_present

#: Names that are junk wherever they appear, besides anything starting with ``.``.
JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
SHOWN = 10  # names shown per problem
#: Invisible characters that reorder how a name is shown (U+202E turns "gpj.exe" around): the
#: bidirectional marks, embeddings, overrides and isolates. Control characters (category Cc:
#: newline, ESC...) are refused too.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
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
    #: Symlinks (and other non-regular files) skipped, not followed.
    links: int = 0

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
            + (f"; skipped {self.links} symlinks (not followed)" if self.links else "")
        )


@contextmanager
def open_source(path: Path) -> Iterator[DataSource]:
    """The checked data set in the zip or folder at ``path``; a zip stays open while in use."""
    if path.is_dir():
        entries, links = folder_entries(path)
        yield scan(str(path), entries, lambda file: read_file(path, file), links)
    elif path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            kept = [i for i in infos if not stat.S_ISLNK(i.external_attr >> 16)]
            refuse_unreadable_members(path, kept)
            entries = [(i.filename, None if i.is_dir() else i.file_size) for i in kept]

            def read(file: SourceFile) -> bytes:
                with archive.open(file.name) as member:
                    return read_bounded(member, file.name, IMAGE_ARCHIVE)

            yield scan(str(path), entries, read, len(infos) - len(kept))
    else:
        what = "is not a zip file" if path.exists() else "does not exist"
        raise LaunchError(
            f"{path} {what}: give dogImages.zip or a folder holding train/ valid/ test/"
        )


#: Compression methods Python's zipfile reads: stored, deflate, bzip2, LZMA.
READABLE_COMPRESSION = (
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
    zipfile.ZIP_BZIP2,
    zipfile.ZIP_LZMA,
)


def refuse_unreadable_members(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse, before any request, a zip whose files are encrypted or compressed in a way
    zipfile cannot read (deflate64, AES...): each would fail mid-upload."""
    problems = [
        f"{info.filename!r}: "
        + ("encrypted" if info.flag_bits & 0x1 else f"compression method {info.compress_type}")
        for info in infos
        if not info.is_dir()
        and (info.flag_bits & 0x1 or info.compress_type not in READABLE_COMPRESSION)
    ]
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise LaunchError(
            f"{path}: nothing uploaded, {len(problems)} files cannot be read (re-create the zip "
            f"without a password, compressed with deflate, or give the unzipped folder):\n"
            f"{listed}{more}"
        )


def folder_entries(path: Path) -> tuple[list[tuple[str, int | None]], int]:
    """Each folder and regular file under ``path`` (relative name, size; None for a folder), and
    how many symlinks and other non-regular files were skipped: none is followed."""
    entries: list[tuple[str, int | None]] = []
    links = 0
    for root, folders, files in os.walk(path):  # a linked folder is listed, never entered
        for name in sorted(folders + files):
            full = Path(root, name)
            info = full.lstat()
            relative = full.relative_to(path).as_posix()
            if stat.S_ISDIR(info.st_mode):
                entries.append((relative, None))
            elif stat.S_ISREG(info.st_mode):
                entries.append((relative, info.st_size))
            else:
                links += 1
    return sorted(entries), links


def read_file(folder: Path, file: SourceFile) -> bytes:
    """A file's bytes, bounded; refused (OSError ELOOP) if it became a symlink since the scan."""
    descriptor = os.open(folder / file.name, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as stream:
        return read_bounded(stream, file.name, IMAGE_ARCHIVE)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot become part of an S3 key, or None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "not UTF-8 (rename it)"
    for char in name:
        if unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS:
            return f"holds the control character U+{ord(char):04X} (rename it)"
    if name.startswith("/") or ".." in PurePosixPath(name).parts:
        return "leaves its folder (a leading / or a .. part)"
    return None


def check_names(location: str, names: Iterable[str]) -> None:
    """Refuse names that cannot be S3 keys; each is shown escaped (``repr``), never as is."""
    refused = [f"{name!r}: {problem}" for name in names if (problem := name_problem(name))]
    if refused:
        listed = "\n".join(f"  - {line}" for line in refused[:SHOWN])
        more = f"\n  and {len(refused) - SHOWN} more" if len(refused) > SHOWN else ""
        raise LaunchError(
            f"{location}: nothing uploaded, names that cannot become S3 keys ({len(refused)}):\n"
            f"{listed}{more}"
        )


def is_junk(parts: Parts) -> bool:
    return any(part in JUNK_NAMES or part.startswith(".") for part in parts)


def junk_depth(parts: Parts) -> int:
    """How many parts up to the first junk one: a folder holding only junk is still a folder."""
    return next(i for i, part in enumerate(parts) if is_junk((part,)))


def scan(
    location: str,
    entries: Iterable[tuple[str, int | None]],
    read: Callable[[SourceFile], bytes],
    links: int = 0,
) -> DataSource:
    """Check ``entries`` (path, size; None for a folder) and name the files to send.

    Raises LaunchError naming every name that cannot be a key, else listing every problem: no
    splits, a missing or doubled split, files outside class folders, non-image files, images
    over the cap, empty class folders, class folders that differ.
    """
    files: dict[Parts, tuple[str, int]] = {}
    folders: set[Parts] = set()
    junk = 0
    entries = list(entries)
    check_names(location, (name for name, _ in entries if not is_junk(PurePosixPath(name).parts)))
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
    cap = IMAGE_ARCHIVE.member_bytes
    large = sorted("/".join(parts) for parts, (_, size) in files.items() if size > cap)
    if large:
        problems.append(
            f"{len(large)} files over {cap / 2**20:.0f} MiB, the cap on an image: {shown(large)}"
        )
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
        links=links,
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
