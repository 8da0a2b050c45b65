"""The data channels' layout, checked before any job starts.

The trainer (:mod:`dogbreed.train.dataset`) needs three splits, ``train``, ``valid`` and ``test``, each a
folder of class folders, the same classes in each: as channels of their own, or as folders of one
``training`` channel (the dogImages archive layout). A job started without them fails on its first
line, and a tuning job fails every trial, so the launcher lists the folders first: S3 prefixes
with ``ListObjectsV2`` (``Delimiter="/"``), ``file://`` folders (local mode) on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.session import Aws
from dogbreed.splits import locate_splits

SHOWN = 5  # differing class names shown in a message

Lister = Callable[[str], set[str]]


@dataclass(frozen=True)
class DataLayout:
    """Where each split is, and the class folders they share."""

    splits: dict[str, str]
    classes: tuple[str, ...]

    def summary(self) -> str:
        return f"data: {len(self.classes)} classes in {', '.join(self.splits.values())}"


def s3_folder_lister(s3: Any) -> Lister:
    """Names of the folders directly under an ``s3://`` prefix (the keys' next path part)."""

    def folders(uri: str) -> set[str]:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        names = set()
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                names.add(common["Prefix"][len(prefix) :].rstrip("/"))
        return names

    return folders


def file_folders(uri: str) -> set[str]:
    """Names of the folders directly under a ``file://`` folder (none if it is missing)."""
    root = Path(urlparse(uri).path)
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def join(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/{name}/"


def locate_split_uris(channels: Mapping[str, str], folders: Lister) -> dict[str, str]:
    """Each split's URI by :mod:`dogbreed.splits`' rule; a LaunchError names the missing ones."""
    located = locate_splits(channels, folders, join)
    if located.missing:
        root = located.root
        where = f"; {root} holds {sorted(located.inside) or 'no folders'}" if root else ""
        raise LaunchError(
            f"no {' and no '.join(located.missing)} split: the trainer needs train/, valid/ and "
            f"test/ (--train, --valid and --test, or --data holding all three){where}"
        )
    return located.found


def check_layout(aws: Aws, channels: Mapping[str, str]) -> DataLayout:
    """Refuse data without all three splits, or whose splits' class folders differ."""
    s3 = s3_folder_lister(aws.client("s3"))

    def folders(uri: str) -> set[str]:
        return s3(uri) if uri.startswith("s3://") else file_folders(uri)

    splits = locate_split_uris(channels, folders)
    classes = {}
    for split, uri in splits.items():
        classes[split] = folders(uri)
        if not classes[split]:
            raise LaunchError(
                f"split {split!r} at {uri} has no class folders "
                "(expected e.g. 001.Affenpinscher/ holding images)"
            )
    reference = classes["train"]
    for split in ("valid", "test"):
        if classes[split] != reference:
            only_train = sorted(reference - classes[split])[:SHOWN]
            only_here = sorted(classes[split] - reference)[:SHOWN]
            raise LaunchError(
                f"class folders differ between train and {split}: only in train: "
                f"{only_train or 'none'}; only in {split}: {only_here or 'none'}"
            )
    return DataLayout(splits, tuple(sorted(reference)))
