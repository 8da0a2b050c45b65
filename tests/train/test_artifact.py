"""The model artifact: save, load from a folder or a model.tar.gz, and refuse what is wrong."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch

from dogbreed.artifact import (
    ArtifactError,
    ModelSpec,
    load_artifact,
    resolve_model_dir,
    save_artifact,
)
from dogbreed.model import build_model

SPEC = ModelSpec(["Beagle", "Akita", "Pug"], 64, [0.5, 0.5, 0.5], [0.2, 0.2, 0.2])


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_artifact(tmp_path / "model", build_model(3), SPEC)
    return tmp_path / "model"


def test_round_trip_from_a_folder_and_a_tarball(model_dir: Path, tmp_path: Path) -> None:
    model, spec = load_artifact(model_dir)
    assert spec == SPEC and not model.training
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:  # SageMaker's tarball has ./-prefixed names
        for name in ("model.pt", "model.json"):
            tar.add(model_dir / name, arcname=f"./{name}")
    from_tar, spec_tar = load_artifact(tarball)
    x = torch.randn(2, 3, 64, 64)
    assert spec_tar == SPEC and torch.equal(model(x), from_tar(x))


def test_unsafe_tar_members_are_never_written(tmp_path: Path) -> None:
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        escape = tarfile.TarInfo("../escaped.txt")
        escape.size = 1
        tar.addfile(escape, io.BytesIO(b"x"))
        link = tarfile.TarInfo("model.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    folder = resolve_model_dir(tarball)
    assert list(folder.iterdir()) == [] and not (folder.parent / "escaped.txt").exists()
    with pytest.raises(ArtifactError, match="no model.json in"):
        load_artifact(tarball)


def test_weights_that_do_not_match_the_spec_are_refused(model_dir: Path) -> None:
    spec = json.loads((model_dir / "model.json").read_text())
    spec["class_names"].append("Boxer")
    (model_dir / "model.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match=r"model.pt does not match model.json"):
        load_artifact(model_dir)


def test_a_malformed_spec_names_the_file(model_dir: Path) -> None:
    (model_dir / "model.json").write_text('{"class_names": ["a"]}')
    with pytest.raises(ArtifactError, match=r"model.json is not a valid model spec"):
        load_artifact(model_dir)


# --- hostile tarballs (issue 23, finding 1) ---------------------------------------------------

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture
def extraction_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory extractions go to, empty."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def bytes_on_disk(folder: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*"))


def gnu_sparse_header(name: str, apparent: int) -> bytes:
    """An old-GNU sparse ('S') header: one data byte stored, at the end of ``apparent`` bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 1
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % (apparent - 1)  # sparse map: (offset, numbytes)
    header[398:410] = b"%011o\0" % 1
    header[483:495] = b"%011o\0" % apparent  # realsize
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def write_sparse_bomb(path: Path, kind: str, apparent: int = GIB) -> Path:
    """A tar.gz of one sparse member claiming ``apparent`` bytes: holes and one byte of data."""
    if kind == "pax":  # GNU sparse 0.1, in pax records
        info = tarfile.TarInfo("model.pt")
        info.size = 1
        info.pax_headers = {"GNU.sparse.map": f"{apparent - 1},1", "GNU.sparse.size": str(apparent)}
        with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(info, io.BytesIO(b"x"))
    else:
        body = gnu_sparse_header("model.pt", apparent) + b"x".ljust(512, b"\0") + bytes(1024)
        path.write_bytes(gzip.compress(body))
    return path


@pytest.mark.parametrize("kind", ["pax", "gnu"])
def test_a_sparse_bomb_is_refused_before_anything_is_written(kind, extraction_tmp, tmp_path):
    """da1db7c wrote 1,073,741,824 bytes from this ~200-byte tarball, in about a second."""
    bomb = write_sparse_bomb(tmp_path / "model.tar.gz", kind)
    assert bomb.stat().st_size < 400
    with pytest.raises(ArtifactError, match=r"'model.pt' is a sparse member \(claiming 1,073,"):
        resolve_model_dir(bomb)
    assert list(extraction_tmp.iterdir()) == []  # nothing written, no folder left


class Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks: a large member without holding it in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def write_tarball(path: Path, members: list[tuple[str, int]]) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BufferedReader(Zeros(size), MIB))
    return path


@pytest.mark.parametrize(
    ("members", "refused"),
    [
        ([("model.pt", 300 * MIB)], r"'model.pt' is 314,572,800 bytes, over the cap on a model "),
        (
            [(f"model{i}.pt", 200 * MIB) for i in range(3)],
            r"its members claim 629,145,600 bytes up to 'model2.pt', over the cap on all "
            r"together: 536,870,912 bytes \(512 MiB\)",
        ),
        ([(f"{i}.txt", 0) for i in range(1001)], r"more than 1,000 members, the cap on an archive"),
    ],
    ids=["member-300MiB", "total-600MiB", "1001-members"],
)
def test_a_tarball_over_the_caps_is_refused_from_its_headers(
    members, refused, extraction_tmp, tmp_path
):
    """da1db7c wrote them all: 314,572,800 bytes, 629,145,600 bytes, 1,001 files."""
    tarball = write_tarball(tmp_path / "model.tar.gz", members)
    with pytest.raises(ArtifactError, match=refused):
        resolve_model_dir(tarball)
    assert list(extraction_tmp.iterdir()) == []


def small_tarball(path: Path) -> Path:
    """A model.tar.gz of 2 MB of incompressible bytes (a stand-in for model.pt) and a model.json."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in (("./model.json", b"{}"), ("./model.pt", os.urandom(2 * MIB))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_failed_extraction_leaves_no_folder(extraction_tmp, tmp_path):
    """da1db7c raised a bare EOFError and left the folder, with what it had written, behind."""
    tarball = small_tarball(tmp_path / "model.tar.gz")
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"cannot extract .*model.tar.gz: EOFError: Compressed"):
        resolve_model_dir(tarball)
    assert list(extraction_tmp.iterdir()) == []


_EXTRACT_AND_FORK = """
import os, sys
from pathlib import Path
from dogbreed.artifact import resolve_model_dir
folder = resolve_model_dir(Path(sys.argv[1]))
pid = os.fork()
if pid == 0:  # a child ending as a gunicorn worker does: sys.exit, so atexit handlers run
    sys.exit(0)
os.waitpid(pid, 0)
print(sorted(p.name for p in folder.iterdir()))
"""


def test_the_folder_goes_when_the_process_exits_not_when_a_fork_of_it_does(tmp_path):
    """da1db7c left every extraction in the temporary directory (the server's 43 MB copy)."""
    tarball = small_tarball(tmp_path / "model.tar.gz")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", _EXTRACT_AND_FORK, str(tarball)],
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['model.json', 'model.pt']"]  # there after the fork
    assert [(p.name, bytes_on_disk(p)) for p in tmp.iterdir()] == []
