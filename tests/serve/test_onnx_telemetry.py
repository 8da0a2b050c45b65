"""ONNX Runtime's telemetry stays off: the slim server writes nothing to its user's home (where
onnxruntime >= 1.32 keeps a device ID and an event cache for upload), and logs no telemetry
warning; the export process gets the same opt-out."""

from __future__ import annotations

from pathlib import Path

import pytest

from dogbreed.export.process import export_environment
from dogbreed.onnx_telemetry import VARIABLE

from .conftest import SLIM_SERVE_BIN, start_server

#: Variables under which ONNX Runtime suppresses telemetry by itself (CI systems, its own tests):
#: removed, so that this test fails on a server that does not opt out, in CI too.
SUPPRESSING = (
    "CI", "BUILDKITE", "CIRCLECI", "CODEBUILD_BUILD_ID", "GITHUB_ACTIONS", "GITLAB_CI",
    "JENKINS_URL", "ORT_RUNNING_UNIT_TESTS", "TEAMCITY_VERSION", "TF_BUILD", "TRAVIS", VARIABLE,
)  # fmt: skip


def test_the_slim_server_keeps_onnxruntime_telemetry_off(
    onnx_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SUPPRESSING:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    server = start_server(onnx_model_dir, tmp_path, serve_bin=SLIM_SERVE_BIN, HOME=str(home))
    try:
        server.wait_ready()
        response = server.post_jpeg(1, timeout=60)
        assert response.status_code == 200, response.text
    finally:
        server.stop()
    assert "with ONNX Runtime" in server.log()
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
    assert "telemetry" not in server.log().lower()


def test_the_export_process_opts_out_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOGBREED_ONNX_SITE", str(tmp_path))
    monkeypatch.delenv(VARIABLE, raising=False)
    assert export_environment()[VARIABLE] == "1"
    monkeypatch.setenv(VARIABLE, "0")
    assert export_environment()[VARIABLE] == "0"
