"""Our own Python child processes never import from the folder they were started in.

A planted module in the working folder (``tarfile.py``, ``csv.py``, ``resource.py``...) records that
it ran. Before ``PYTHONSAFEPATH=1`` (da1db7c) the server's tcmalloc re-execution, the export
process and the training job's child each ran it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dogbreed.export.common import ONNX_SITE_VAR
from dogbreed.export.process import run_export_process
from dogbreed.serve import allocator
from dogbreed.train.toolkit import run_child

REPO = Path(__file__).resolve().parents[1]
#: Modules each child imports from the standard library after it starts.
PLANTED = ("tarfile", "csv", "argparse", "resource", "json", "signal", "socket", "logging")


def plant(folder: Path) -> Path:
    """Modules in ``folder`` that append their name to ``folder/ran`` when imported."""
    marker = folder / "ran"
    for name in PLANTED:
        (folder / f"{name}.py").write_text(
            f"with open({str(marker)!r}, 'a') as f:\n    f.write({name!r} + '\\n')\n"
            "raise ImportError('planted')\n"
        )
    return marker


def test_the_export_process_ignores_modules_in_its_folder(tmp_path: Path, monkeypatch) -> None:
    site = Path(os.environ.get(ONNX_SITE_VAR) or REPO / "build" / "onnx-site")
    if not (site / "onnx").is_dir():
        pytest.fail(f"no ONNX site at {site}: run scripts/dev_env.sh (make venv)")
    marker = plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ONNX_SITE_VAR, str(site))
    run_export_process(["--help"], timeout=120)
    assert not marker.exists(), f"the export process imported {marker.read_text().split()}"


def test_the_training_child_ignores_modules_in_its_folder(tmp_path: Path, monkeypatch) -> None:
    marker = plant(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = run_child([sys.executable, "-m", "dogbreed.train", "--help"], dict(os.environ))
    assert not marker.exists(), f"the training child imported {marker.read_text().split()}"
    assert code == 0


@pytest.mark.skipif(
    allocator.tcmalloc_library() is None and os.environ.get("CI") != "true",
    reason="tcmalloc not installed (apt-get install libtcmalloc-minimal4); CI installs it",
)
def test_the_servers_reexecution_ignores_modules_in_its_folder(tmp_path: Path) -> None:
    marker = plant(tmp_path)
    reexec = (
        "import sys\nfrom dogbreed.serve.allocator import reexec_with_allocator\n"
        "reexec_with_allocator(sys.argv[1:])\nraise SystemExit('no re-execution')"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONSAFEPATH")}
    result = subprocess.run(  # -P: this first process keeps off the folder; its re-execution must
        [sys.executable, "-P", "-c", reexec, "--help"],
        cwd=tmp_path,
        env={**env, "DOGBREED_MALLOC": "tcmalloc"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not marker.exists(), f"the re-executed server imported {marker.read_text().split()}"
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()
