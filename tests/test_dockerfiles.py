"""Static checks of the Dockerfiles and the scripts that run commands inside the images.

Any Debian or Ubuntu base with python3, pip, torch and torchvision must work: such bases have no
``python`` or ``pip`` command (only ``python3`` and ``python3 -m pip``), so none may be called.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
IN_IMAGE = [
    ROOT / "docker" / "train" / "Dockerfile",
    ROOT / "docker" / "serve" / "Dockerfile",
    ROOT / "docker" / "serve" / "entrypoint.sh",
    ROOT / "local_test" / "train_local.sh",
]
BARE = re.compile(r"(?:^|[\s;&|(\"'`])(?<!-m )(python|pip)(?=\s)")


def _commands(path: Path) -> list[tuple[int, str]]:
    """Lines that are not comments, with their numbers."""
    return [
        (number, line)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("path", IN_IMAGE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_python_or_pip(path: Path) -> None:
    bare = [f"{path.name}:{n}: {line.strip()}" for n, line in _commands(path) if BARE.search(line)]
    assert not bare, "call python3 / python3 -m pip instead:\n" + "\n".join(bare)


def test_the_check_catches_a_bare_call() -> None:
    assert BARE.search("RUN pip install x") and BARE.search("    && python -c 'import x'")
    assert not BARE.search("RUN python3 -m pip install x") and not BARE.search(
        "/opt/venv/bin/python3 -c"
    )


def test_both_images_default_to_the_same_base() -> None:
    defaults = {
        re.search(
            r"^ARG BASE_IMAGE=(\S+)", (ROOT / "docker" / n / "Dockerfile").read_text(), re.M
        ).group(1)
        for n in ("train", "serve")
    }
    assert len(defaults) == 1, defaults
