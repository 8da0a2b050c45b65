"""The notebook doc's SDK v2 local-mode block, run as written, in a kernel like the doc's.

``docs/notebook.md`` shows a notebook user ``Estimator.fit`` on ``file://`` data with our train
image, ``Model.deploy`` with our serve image, a JPEG prediction and ``delete_endpoint``. This
test takes that code block from the doc (so the two cannot drift) and runs it with the settings
the doc asks for, in a venv of its own holding ``sagemaker`` v2 beside smdebug and its
protobuf/numpy pins (the doc's first kernel), without torch. The venv is kept under /tmp, keyed
on the pins, so a second run reuses it.

Around the block, the runner (``HARNESS_HEAD``) records every botocore API call (the process has
fake credentials and ``AWS_ENDPOINT_URL`` on a closed local port: nothing may reach AWS), every
usage-telemetry request the SDK would send, and the ports the serving container publishes, which
it binds to 127.0.0.1 (v2 has no setting for that address; the doc says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from e2e_support import FIGURES, REPO_ROOT, free_port, run, unavailable

from dogbreed.data import class_label
from dogbreed.metrics import OBJECTIVE_METRIC, parse_metric_line

pytestmark = pytest.mark.slow

NOTEBOOK_DOC = REPO_ROOT / "docs" / "notebook.md"
MARKER = "tests/e2e/test_sdk_v2_local.py runs the next block"
#: The doc's "SDK v2 + smdebug" kernel; sagemaker 2.257.7 is the last v2 release (late 2026).
KERNEL_REQUIREMENTS = (
    "sagemaker==2.257.7",
    "smdebug==1.0.34",
    "protobuf<=3.20.3",
    "numpy<2.3",
    "pandas",
    "psutil",
)
VENV_CREATE_TIMEOUT_S = 120
PIP_TIMEOUT_S = 900
BLOCK_TIMEOUT_S = 900
REPORT_PREFIX = "SDK-V2-REPORT "
COMPOSE_DIR_LABEL = "com.docker.compose.project.working_dir"

HARNESS_HEAD = """
import json

import botocore.client
import sagemaker.telemetry.telemetry_logging as _telemetry
from sagemaker.local import image as _image

AWS_CALLS, TELEMETRY, PORTS = [], [], []
_make_api_call = botocore.client.BaseClient._make_api_call


def _record_api_call(self, operation, params):
    AWS_CALLS.append(f"{self.meta.service_model.service_name}.{operation}")
    return _make_api_call(self, operation, params)


botocore.client.BaseClient._make_api_call = _record_api_call
_telemetry._send_telemetry_request = lambda *args, **kwargs: TELEMETRY.append(str(args[:2]))
_create_docker_host = _image._SageMakerContainer._create_docker_host


def _on_loopback(self, *args, **kwargs):
    host = _create_docker_host(self, *args, **kwargs)
    if "ports" in host:
        host["ports"] = [f"127.0.0.1:{port}" for port in host["ports"]]
        PORTS.extend(host["ports"])
    return host


_image._SageMakerContainer._create_docker_host = _on_loopback
"""

HARNESS_TAIL = """
import importlib.util

import smdebug.trials  # the doc's kernel reads Debugger trials: protobuf and numpy must fit

print(REPORT_PREFIX + json.dumps({
    "answer": answer,
    "model_data": model_data,
    "aws_calls": AWS_CALLS,
    "telemetry": TELEMETRY,
    "ports": PORTS,
    "torch_installed": importlib.util.find_spec("torch") is not None,
}))
"""


def doc_block(doc: Path = NOTEBOOK_DOC) -> str:
    """The ```python block that follows the line naming this test in ``doc``."""
    text = doc.read_text()
    start = text.find(MARKER)
    assert start >= 0, f"{doc} lost the line {MARKER!r} that marks the block this test runs"
    match = re.compile(r"```python\n(.*?)\n```", re.DOTALL).search(text, start)
    assert match, f"no ```python block after {MARKER!r} in {doc}"
    return match.group(1)


def _kernel_python() -> Path:
    """A venv with :data:`KERNEL_REQUIREMENTS`, created once per pin set (under /tmp)."""
    key = hashlib.sha256(f"{sys.version_info[:2]} {KERNEL_REQUIREMENTS}".encode()).hexdigest()
    home = Path(tempfile.gettempdir()) / f"dogbreed-sdk-v2-kernel-{key[:12]}"
    if (home / "complete").exists():
        return home / "bin" / "python"
    build = Path(tempfile.mkdtemp(prefix=f"{home.name}-partial-"))
    started = time.monotonic()
    try:
        steps = [
            ([sys.executable, "-m", "venv", "--clear", str(build)], VENV_CREATE_TIMEOUT_S),
            (
                [str(build / "bin" / "python"), "-m", "pip", "install", "-q"]
                + ["--disable-pip-version-check", *KERNEL_REQUIREMENTS],
                PIP_TIMEOUT_S,
            ),
        ]
        for cmd, timeout in steps:
            result = run(cmd, timeout=timeout)
            if result.returncode != 0:
                unavailable(
                    f"cannot build the SDK v2 kernel ({' '.join(cmd[:4])} ...): "
                    f"{result.stderr.strip()[-1500:]}"
                )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"building the SDK v2 kernel took over {exc.timeout:.0f} s: {exc.cmd}", False)
    (build / "complete").write_text(" ".join(KERNEL_REQUIREMENTS))
    FIGURES["SDK v2 kernel venv (sagemaker 2.257.7 + smdebug), created"] = (
        f"{time.monotonic() - started:.0f} s"
    )
    try:
        build.rename(home)  # a venv runs from a new path with `python -m`; scripts would not
    except OSError:  # another run finished first: use its venv
        run(["rm", "-rf", str(build)])
    return home / "bin" / "python"


@pytest.fixture(scope="session")
def kernel_python() -> Path:
    return _kernel_python()


def compose_containers(root: Path) -> dict[str, str]:
    """``{container id: state}`` of the containers local mode composed under ``root``."""
    listing = run(
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label={COMPOSE_DIR_LABEL}",
            "--format",
            f'{{{{.ID}}}} {{{{.State}}}} {{{{.Label "{COMPOSE_DIR_LABEL}"}}}}',
        ],
        timeout=60,
    )
    found = {}
    for line in listing.stdout.splitlines():
        container, state, folder = line.split(" ", 2)
        if Path(folder).is_relative_to(root):
            found[container] = state
    return found


def test_doc_block_is_the_local_mode_block() -> None:
    block = doc_block()
    for call in ('instance_type="local"', "estimator.fit(", "model.deploy(", "delete_endpoint()"):
        assert call in block, f"the tested block of {NOTEBOOK_DOC.name} no longer has {call}"
    assert "metric_definitions()" in block and 'IdentitySerializer("image/jpeg")' in block


def test_notebook_v2_local_mode_trains_deploys_and_predicts(
    kernel_python: Path,
    train_image: str,
    serve_image: str,
    sample_data: Path,
    scratch_dir: Path,
) -> None:
    breeds = {class_label(p.name) for p in (sample_data / "train").iterdir()}
    settings = {
        "TRAIN_IMAGE": train_image,
        "SERVE_IMAGE": serve_image,
        "ROLE": "arn:aws:iam::111111111111:role/unused-locally",
        "DATA_DIR": str(sample_data),
        "OUTPUT_DIR": str(scratch_dir / "output"),
        "CONTAINER_ROOT": str(scratch_dir / "containers"),
        "PHOTO": str(next((sample_data / "test").rglob("*.jpg"))),
        "SERVING_PORT": free_port(),
        "REPORT_PREFIX": REPORT_PREFIX,
    }
    cell = scratch_dir / "notebook_cell.py"
    assignments = "".join(f"{name} = {value!r}\n" for name, value in settings.items())
    cell.write_text(HARNESS_HEAD + assignments + doc_block() + "\n" + HARNESS_TAIL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # nothing listens: an AWS call would fail
        AWS_EC2_METADATA_DISABLED="true",
        SAGEMAKER_SUPPRESS_V2_WARNING="1",
        PYTHONPATH=str(REPO_ROOT / "src"),  # dogbreed.metrics, as `pip install --no-deps` gives
        PYTHONUNBUFFERED="1",
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [str(kernel_python), str(cell)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # the SDK's log and the containers' output, in order
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the notebook block ran over {BLOCK_TIMEOUT_S} s: {exc.output!r:.3000}", False)
    finally:
        left = compose_containers(scratch_dir / "containers")
        if left:
            run(["docker", "rm", "-f", *left], timeout=120)
    FIGURES["SDK v2 local mode: fit 1 epoch + deploy + predict + delete"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    log = result.stdout
    assert result.returncode == 0, log[-5000:]
    report = json.loads(
        next(x for x in log.splitlines() if x.startswith(REPORT_PREFIX))[len(REPORT_PREFIX) :]
    )

    assert report["aws_calls"] == [], "local mode called AWS"
    assert report["telemetry"] == [], "the SDK would have sent usage telemetry"
    assert report["ports"] and all(p.startswith("127.0.0.1:") for p in report["ports"])
    assert not report["torch_installed"], "the notebook kernel must not need torch"
    assert "running" not in left.values(), f"the endpoint's container still runs: {left}"

    model_tar = Path(settings["OUTPUT_DIR"]) / "model.tar.gz"
    assert report["model_data"] == model_tar.as_uri() and model_tar.is_file()
    metrics = [m for m in map(parse_metric_line, log.splitlines()) if m]
    assert any(OBJECTIVE_METRIC in m for m in metrics), log[-3000:]

    predictions = report["answer"]["predictions"][0]
    assert len(predictions) == 3  # top_k=3 from the custom attributes
    assert {p["label"] for p in predictions} <= breeds
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
