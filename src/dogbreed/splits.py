"""The one split rule: which channels or folders are a data set's train, valid and test.

A split is its own channel under one of its names (:data:`SPLIT_ALIASES`), else a folder of one of
those names in the ``training`` channel (the dogImages archive layout); a channel wins over a
folder, and an earlier name over a later one. Class folders named like ``001.Affenpinscher`` give
the label ``Affenpinscher``. Torch-free: the trainer applies the rule to container paths, the
launcher to S3 prefixes (``dogbreed train``/``tune``) and to zips and folders (``dogbreed upload``);
each names the fix its own user can make.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from dogbreed.contract import SPLIT_ALIASES, SPLITS

#: The channel that may hold the splits as folders.
ROOT_CHANNEL = "training"
#: Every name a split may go by.
SPLIT_NAMES = frozenset(alias for aliases in SPLIT_ALIASES.values() for alias in aliases)

_NUMBER_PREFIX = re.compile(r"^\d+[._-]")

Location = TypeVar("Location")


def class_label(folder_name: str) -> str:
    """``001.Affenpinscher`` -> ``Affenpinscher``; other names are kept as they are."""
    return _NUMBER_PREFIX.sub("", folder_name) or folder_name


def names_present(names: Collection[str]) -> dict[str, list[str]]:
    """For each split, which of its names appear in ``names``, in order of preference."""
    return {split: [a for a in aliases if a in names] for split, aliases in SPLIT_ALIASES.items()}


@dataclass(frozen=True)
class LocatedSplits(Generic[Location]):
    """Where each split was found; the ``training`` channel and the folders listed in it."""

    found: dict[str, Location]
    root: Location | None
    inside: frozenset[str]

    @property
    def missing(self) -> list[str]:
        return [split for split in SPLITS if split not in self.found]


def locate_splits(
    channels: Mapping[str, Location],
    folders: Callable[[Location], Collection[str]],
    join: Callable[[Location, str], Location],
) -> LocatedSplits[Location]:
    """Each split's location by the rule above; ``folders`` lists the folder names in a location
    (called at most once, on the ``training`` channel, and only when a channel is missing)."""
    found = {split: channels[names[0]] for split, names in names_present(channels).items() if names}
    root = channels.get(ROOT_CHANNEL)
    inside = (
        frozenset(folders(root)) if root is not None and len(found) < len(SPLITS) else frozenset()
    )
    for split, names in names_present(inside).items():
        if split not in found and names:
            found[split] = join(root, names[0])
    return LocatedSplits(found, root, inside)
