"""The notebook doc's SDK v2 blocks, run as written, in a kernel like the doc's.

``docs/notebook.md`` shows two blocks that this file takes from the doc (so they cannot drift)
and runs in a venv of their own holding ``sagemaker`` v2 beside smdebug and its protobuf/numpy
pins (the doc's first kernel), without torch; the venv is kept under /tmp, keyed on the pins.

- The local-mode block: ``Estimator.fit`` on ``file://`` data with our train image,
  ``Model.deploy`` with our serve image, a JPEG prediction, ``delete_endpoint``, on the Docker
  engine. Around it, ``LOCAL_HARNESS_HEAD`` records every botocore API call (fake credentials,
  ``AWS_ENDPOINT_URL`` on a closed local port: nothing may reach AWS), every usage-telemetry
  request the SDK would send, and the ports the serving container publishes, which it binds to
  127.0.0.1 (v2 has no setting for that address; the doc says so).
- The AWS block (train with spot, checkpoints, Debugger and the profiler; tune; deploy the best
  job; predict; delete), against ``FAKE_AWS_HEAD``: every botocore call is checked against the
  service model and answered as a finished job would be, and the requests are asserted here.
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
from dogbreed.hyperparams import parse_hyperparameters
from dogbreed.metrics import (
    OBJECTIVE_METRIC,
    OBJECTIVE_TYPE,
    metric_definitions,
    parse_metric_line,
)

pytestmark = pytest.mark.slow

NOTEBOOK_DOC = REPO_ROOT / "docs" / "notebook.md"
LOCAL_MARKER = "tests/e2e/test_sdk_v2_local.py runs the next block in local mode"
AWS_MARKER = "tests/e2e/test_sdk_v2_local.py runs the next block against a fake AWS"
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

LOCAL_HARNESS_HEAD = """
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

LOCAL_HARNESS_TAIL = """
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


FAKE_AWS_HEAD = """import io
import json
import time
from datetime import datetime

import botocore.client
from botocore.response import StreamingBody
from botocore.validate import ParamValidator
import sagemaker.telemetry.telemetry_logging as _telemetry

REQUESTS, INVALID = [], []
_telemetry._send_telemetry_request = lambda *args, **kwargs: None
time.sleep = lambda seconds: None  # the SDK's polling, against answers that are final at once
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
BEST_JOB = "dogbreed-best"
ANSWER = {"predictions": [[{"label": "Dalmatian", "class_index": 56, "probability": 0.93}]]}


def _job(params):
    name = params["TrainingJobName"]
    create = next((r for s, o, r in REQUESTS if o == "CreateTrainingJob"), {})
    return {
        **{k: create[k] for k in ("AlgorithmSpecification", "RoleArn", "ResourceConfig",
                                  "StoppingCondition", "OutputDataConfig", "HyperParameters")
           if k in create},
        "TrainingJobName": name, "TrainingJobArn": f"{ARN}training-job/{name}",
        "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
        "CreationTime": datetime(2026, 1, 1), "TrainingStartTime": datetime(2026, 1, 1),
        "TrainingEndTime": datetime(2026, 1, 1, 1),
        "OutputDataConfig": {"KmsKeyId": "", **create.get("OutputDataConfig", {})},
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://bucket/runs/{name}/output/model.tar.gz"},
    }


def _tuning(params):
    return {
        "HyperParameterTuningJobName": params["HyperParameterTuningJobName"],
        "HyperParameterTuningJobStatus": "Completed",
        "BestTrainingJob": {"TrainingJobName": BEST_JOB, "TrainingJobStatus": "Completed",
                            "CreationTime": datetime(2026, 1, 1), "TunedHyperParameters": {}},
    }


ANSWERS = {
    "CreateTrainingJob": lambda p: {"TrainingJobArn": f"{ARN}training-job/x"},
    "DescribeTrainingJob": _job,
    "ListTags": lambda p: {"Tags": []},
    "DescribeLogStreams": lambda p: {"logStreams": []},
    "CreateHyperParameterTuningJob": lambda p: {"HyperParameterTuningJobArn": f"{ARN}hpo/x"},
    "DescribeHyperParameterTuningJob": _tuning,
    "CreateModel": lambda p: {"ModelArn": f"{ARN}model/x"},
    "CreateEndpointConfig": lambda p: {"EndpointConfigArn": f"{ARN}endpoint-config/x"},
    "CreateEndpoint": lambda p: {"EndpointArn": f"{ARN}endpoint/x"},
    "DescribeEndpoint": lambda p: {"EndpointName": p["EndpointName"], "EndpointStatus": "InService",
                                   "EndpointConfigName": p["EndpointName"],
                                   "EndpointArn": f"{ARN}endpoint/x"},
    "DescribeEndpointConfig": lambda p: {"EndpointConfigName": p["EndpointConfigName"],
                                         "ProductionVariants": [{"VariantName": "AllTraffic",
                                                                 "ModelName": p["EndpointConfigName"]}]},
    "InvokeEndpoint": lambda p: {"ContentType": "application/json",
                                 "Body": StreamingBody(io.BytesIO(json.dumps(ANSWER).encode()),
                                                       len(json.dumps(ANSWER)))},
    "DeleteEndpoint": lambda p: {}, "DeleteEndpointConfig": lambda p: {}, "DeleteModel": lambda p: {},
}


def _answer(self, operation, params):
    shape = self.meta.service_model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        INVALID.append(f"{operation}: {report.generate_report()}")
    REQUESTS.append((self.meta.service_model.service_name, operation, params))
    if operation not in ANSWERS:
        raise AssertionError(f"the fake AWS has no answer for {operation}")
    return ANSWERS[operation](params)


botocore.client.BaseClient._make_api_call = _answer
"""

FAKE_AWS_TAIL = """
_to_json = {"default": lambda o: len(o) if isinstance(o, (bytes, bytearray)) else str(o)}
print(REPORT_PREFIX + json.dumps({
    "requests": [[operation, params] for _, operation, params in REQUESTS],
    "invalid": INVALID,
    "images": [TRAIN_IMAGE, SERVE_IMAGE],
    "best_model_data": _job({"TrainingJobName": BEST_JOB})["ModelArtifacts"]["S3ModelArtifacts"],
    "answer": answer,
    "served": ANSWER,
}, **_to_json))
"""


def doc_block(marker: str, doc: Path = NOTEBOOK_DOC) -> str:
    """The ```python block that follows the line holding ``marker`` in ``doc``."""
    text = doc.read_text()
    start = text.find(marker)
    assert start >= 0, f"{doc} lost the line {marker!r} that marks a block this test runs"
    match = re.compile(r"```python\n(.*?)\n```", re.DOTALL).search(text, start)
    assert match, f"no ```python block after {marker!r} in {doc}"
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


def kernel_env() -> dict[str, str]:
    """The notebook's environment: fake credentials, a region, AWS on a closed local port."""
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
    return env


def run_cell(kernel_python: Path, code: str, folder: Path) -> tuple[str, dict]:
    """Run ``code`` in the kernel (in ``folder``); return its output and its report line."""
    cell = folder / "notebook_cell.py"
    cell.write_text(code)
    try:
        result = subprocess.run(
            [str(kernel_python), str(cell)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # the SDK's log and the containers' output, in order
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            env=kernel_env(),
            cwd=folder,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the notebook block ran over {BLOCK_TIMEOUT_S} s: {exc.output!r:.3000}", False)
    log = result.stdout
    assert result.returncode == 0, log[-5000:]
    line = next(x for x in log.splitlines() if x.startswith(REPORT_PREFIX))
    return log, json.loads(line[len(REPORT_PREFIX) :])


def settings_code(settings: dict[str, object]) -> str:
    return "".join(f"{name} = {value!r}\n" for name, value in settings.items())


def test_the_marked_blocks_are_the_doc_s_local_and_aws_blocks() -> None:
    local = doc_block(LOCAL_MARKER)
    for call in ('instance_type="local"', "estimator.fit(", "model.deploy(", "delete_endpoint()"):
        assert call in local, f"the tested block of {NOTEBOOK_DOC.name} no longer has {call}"
    assert "metric_definitions()" in local and 'IdentitySerializer("image/jpeg")' in local
    aws = doc_block(AWS_MARKER)
    for call in ("HyperparameterTuner(", "tuner.fit(", "model.deploy(", "predictor.predict("):
        assert call in aws, f"the AWS block of {NOTEBOOK_DOC.name} no longer has {call}"


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
    code = LOCAL_HARNESS_HEAD + settings_code(settings) + doc_block(LOCAL_MARKER)
    started = time.monotonic()
    try:
        log, report = run_cell(kernel_python, code + "\n" + LOCAL_HARNESS_TAIL, scratch_dir)
    finally:
        left = compose_containers(scratch_dir / "containers")
        if left:
            run(["docker", "rm", "-f", *left], timeout=120)
    FIGURES["SDK v2 local mode: fit 1 epoch + deploy + predict + delete"] = (
        f"{time.monotonic() - started:.1f} s"
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


def _hyperparameters(values: dict[str, str]) -> None:
    """Parse ``values`` with the trainer's own parser: an unknown name or bad value raises."""
    parse_hyperparameters([arg for name, value in values.items() for arg in (f"--{name}", value)])


def test_notebook_v2_aws_block_sends_what_our_images_need(
    kernel_python: Path, sample_data: Path, scratch_dir: Path
) -> None:
    photo = next((sample_data / "test").rglob("*.jpg"))
    (scratch_dir / "my_dog.jpg").write_bytes(photo.read_bytes())
    code = FAKE_AWS_HEAD + f"REPORT_PREFIX = {REPORT_PREFIX!r}\n" + doc_block(AWS_MARKER)
    _, report = run_cell(kernel_python, code + "\n" + FAKE_AWS_TAIL, scratch_dir)

    assert report["invalid"] == [], "requests that botocore's service model refuses"
    sent = {}
    for operation, params in report["requests"]:
        sent.setdefault(operation, params)
    assert {
        "CreateTrainingJob",
        "CreateHyperParameterTuningJob",
        "CreateModel",
        "CreateEndpoint",
        "InvokeEndpoint",
        "DeleteEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
    } <= set(sent)

    job = sent["CreateTrainingJob"]
    assert job["AlgorithmSpecification"].get("MetricDefinitions") == metric_definitions()
    assert job["AlgorithmSpecification"]["TrainingImage"] == report["images"][0]
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["training"]
    _hyperparameters(job["HyperParameters"])
    assert job["EnableManagedSpotTraining"] and job["CheckpointConfig"]["S3Uri"].endswith("/")
    collections = [c["CollectionName"] for c in job["DebugHookConfig"]["CollectionConfigurations"]]
    assert sorted(collections) == ["gradients", "losses", "weights"], "one config per collection"
    assert [r["RuleConfigurationName"] for r in job["DebugRuleConfigurations"]] == [
        "VanishingGradient",
        "Overfit",
        "LossNotDecreasing",
    ]
    assert "ProfilerReport" in [
        r["RuleConfigurationName"] for r in job["ProfilerRuleConfigurations"]
    ]

    tuning = sent["CreateHyperParameterTuningJob"]
    config, trial = tuning["HyperParameterTuningJobConfig"], tuning["TrainingJobDefinition"]
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": OBJECTIVE_TYPE,
        "MetricName": OBJECTIVE_METRIC,
    }
    assert trial["AlgorithmSpecification"].get("MetricDefinitions") == metric_definitions()
    assert not any(key.startswith(("Debug", "Profiler")) for key in trial)
    _hyperparameters(trial["StaticHyperParameters"])
    for kind in config["ParameterRanges"].values():
        for spec in kind:
            for value in spec.get("Values") or (spec["MinValue"], spec["MaxValue"]):
                _hyperparameters({spec["Name"]: value})

    container = sent["CreateModel"]["PrimaryContainer"]
    assert container["Image"] == report["images"][1]
    assert container["ModelDataUrl"] == report["best_model_data"]  # the best trial's model
    invoke = sent["InvokeEndpoint"]
    assert invoke["ContentType"] == "image/jpeg" and invoke["Accept"] == "application/json"
    assert invoke["CustomAttributes"] == "top_k=3" and invoke["Body"] == photo.stat().st_size
    assert report["answer"] == report["served"]
