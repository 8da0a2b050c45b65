"""The notebook doc's SDK v2 blocks, run as written, in a kernel like the doc's.

``docs/notebook.md`` shows two blocks that this file takes from the doc (so they cannot drift)
and runs in a venv of their own holding ``sagemaker`` v2 beside smdebug and its protobuf/numpy
pins (the doc's first kernel), without torch; each venv is kept under /tmp, keyed on its pins.

- The local-mode block: ``Estimator.fit`` on ``file://`` data with our train image,
  ``Model.deploy`` with our serve image, a JPEG prediction, ``delete_endpoint``, on the Docker
  engine. Around it, ``LOCAL_HARNESS_HEAD`` records every botocore API call (fake credentials,
  ``AWS_ENDPOINT_URL`` on a closed local port: nothing may reach AWS), every usage-telemetry
  request the SDK would send, and the ports the serving container publishes, which it binds to
  127.0.0.1 (v2 has no setting for that address; the doc says so).
- The v2 AWS block (train with spot, checkpoints, Debugger and the profiler; tune; deploy the
  best job; predict; delete), and the v3 block (ModelTrainer, its tuner, ``sagemaker.core``
  resources) in a second venv with ``sagemaker`` 3, against ``FAKE_AWS_HEAD``: every botocore
  call is checked against the service model and answered as a finished job would be, and the
  requests are asserted here.
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

from dogbreed.hyperparams import parse_hyperparameters
from dogbreed.metrics import (
    OBJECTIVE_METRIC,
    OBJECTIVE_TYPE,
    metric_definitions,
    parse_metric_line,
)
from dogbreed.splits import class_label

pytestmark = pytest.mark.slow

NOTEBOOK_DOC = REPO_ROOT / "docs" / "notebook.md"
LOCAL_MARKER = "tests/e2e/test_sdk_v2_local.py runs the next block in local mode"
AWS_MARKER = "tests/e2e/test_sdk_v2_local.py runs the next block with sagemaker v2 against"
V3_MARKER = "tests/e2e/test_sdk_v2_local.py runs the next block with sagemaker v3 against"
#: The doc's "SDK v2 + smdebug" kernel; sagemaker 2.257.7 is the last v2 release (late 2026).
V2_KERNEL = (
    "sagemaker==2.257.7",
    "smdebug==1.0.34",
    "protobuf<=3.20.3",
    "numpy<2.3",
    "pandas",
    "psutil",
)
#: The doc's "SDK v3" kernel (about 1 GB with mlflow; 5 minutes to install here).
V3_KERNEL = ("sagemaker==3.27.0",)
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


FAKE_AWS_HEAD = """import importlib
import io
import json
import time
from datetime import datetime

import botocore.client
from botocore.response import StreamingBody
from botocore.validate import ParamValidator

for _module in ("sagemaker.telemetry.telemetry_logging", "sagemaker.core.telemetry.telemetry_logging"):
    try:  # v2, v3: no usage telemetry from the fake's process
        importlib.import_module(_module)._send_telemetry_request = lambda *args, **kwargs: None
    except ImportError:
        pass
REQUESTS, INVALID, CREATED = [], [], {}
time.sleep = lambda seconds: None  # the SDK's polling, against answers that are final at once
ARN = "arn:aws:sagemaker:us-east-1:123456789012:"
T = datetime(2026, 1, 1)
BEST_JOB = "dogbreed-best"
ANSWER = {"predictions": [[{"label": "Dalmatian", "class_index": 56, "probability": 0.93}]]}
TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
         "Principal": {"Service": "sagemaker.amazonaws.com"}}]}


def _described(operation, **fields):
    return {**CREATED.get(operation, {}), "CreationTime": T, "LastModifiedTime": T, **fields}


def _job(params):
    name = params["TrainingJobName"]
    create = CREATED.get("CreateTrainingJob", {})
    return _described(
        "CreateTrainingJob", TrainingJobName=name, TrainingJobArn=f"{ARN}training-job/{name}",
        TrainingJobStatus="Completed", SecondaryStatus="Completed", TrainingStartTime=T,
        TrainingEndTime=T, OutputDataConfig={"KmsKeyId": "", **create.get("OutputDataConfig", {})},
        ModelArtifacts={"S3ModelArtifacts": f"s3://bucket/runs/{name}/output/model.tar.gz"},
    )


def _tuning(params):
    best = {"TrainingJobName": BEST_JOB, "TrainingJobArn": f"{ARN}training-job/{BEST_JOB}",
            "TrainingJobStatus": "Completed", "CreationTime": T, "TunedHyperParameters": {}}
    return _described(
        "CreateHyperParameterTuningJob", HyperParameterTuningJobArn=f"{ARN}hpo/x",
        HyperParameterTuningJobStatus="Completed", TrainingJobStatusCounters={},
        ObjectiveStatusCounters={}, BestTrainingJob=best,
    )


def _body(value):
    data = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(data), len(data))


ANSWERS = {
    "GetCallerIdentity": lambda p: {"Account": "123456789012", "UserId": "AIDAEXAMPLE",
                                    "Arn": "arn:aws:iam::123456789012:user/notebook"},
    "GetRole": lambda p: {"Role": {"RoleName": p["RoleName"], "Path": "/", "CreateDate": T,
                                   "Arn": f"arn:aws:iam::123456789012:role/{p['RoleName']}",
                                   "RoleId": "AROAEXAMPLEEXAMPLE01",
                                   "AssumeRolePolicyDocument": json.dumps(TRUST)}},
    "SimulatePrincipalPolicy": lambda p: {"EvaluationResults": [
        {"EvalActionName": action, "EvalDecision": "allowed"} for action in p["ActionNames"]]},
    "CreateTrainingJob": lambda p: {"TrainingJobArn": f"{ARN}training-job/x"},
    "DescribeTrainingJob": _job,
    "ListTags": lambda p: {"Tags": []},
    "DescribeLogStreams": lambda p: {"logStreams": []},
    "CreateHyperParameterTuningJob": lambda p: {"HyperParameterTuningJobArn": f"{ARN}hpo/x"},
    "DescribeHyperParameterTuningJob": _tuning,
    "CreateModel": lambda p: {"ModelArn": f"{ARN}model/x"},
    "DescribeModel": lambda p: _described("CreateModel", ModelArn=f"{ARN}model/x"),
    "CreateEndpointConfig": lambda p: {"EndpointConfigArn": f"{ARN}endpoint-config/x"},
    "DescribeEndpointConfig": lambda p: _described(
        "CreateEndpointConfig", EndpointConfigArn=f"{ARN}endpoint-config/x"),
    "CreateEndpoint": lambda p: {"EndpointArn": f"{ARN}endpoint/x"},
    "DescribeEndpoint": lambda p: _described(
        "CreateEndpoint", EndpointArn=f"{ARN}endpoint/x", EndpointStatus="InService"),
    "InvokeEndpoint": lambda p: {"ContentType": "application/json", "Body": _body(ANSWER)},
    "DeleteEndpoint": lambda p: {},
    "DeleteEndpointConfig": lambda p: {},
    "DeleteModel": lambda p: {},
}


def _answer(self, operation, params):
    shape = self.meta.service_model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        INVALID.append(f"{operation}: {report.generate_report()}")
    REQUESTS.append((self.meta.service_model.service_name, operation, params))
    if operation.startswith("Create"):
        CREATED[operation] = params
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


def _kernel_python(requirements: tuple[str, ...]) -> Path:
    """A venv with ``requirements``, created once per pin set (under /tmp)."""
    key = hashlib.sha256(f"{sys.version_info[:2]} {requirements}".encode()).hexdigest()
    home = Path(tempfile.gettempdir()) / f"dogbreed-sdk-kernel-{key[:12]}"
    if (home / "complete").exists():
        return home / "bin" / "python"
    build = Path(tempfile.mkdtemp(prefix=f"{home.name}-partial-"))
    started = time.monotonic()
    try:
        steps = [
            ([sys.executable, "-m", "venv", "--clear", str(build)], VENV_CREATE_TIMEOUT_S),
            (
                [str(build / "bin" / "python"), "-m", "pip", "install", "-q"]
                + ["--disable-pip-version-check", *requirements],
                PIP_TIMEOUT_S,
            ),
        ]
        for cmd, timeout in steps:
            result = run(cmd, timeout=timeout)
            if result.returncode != 0:
                unavailable(
                    f"cannot build a kernel with {requirements[0]} ({' '.join(cmd[:4])} ...): "
                    f"{result.stderr.strip()[-1500:]}"
                )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"building the {requirements[0]} kernel took over {exc.timeout:.0f} s", False)
    (build / "complete").write_text(" ".join(requirements))
    FIGURES[f"notebook kernel venv with {requirements[0]}, created"] = (
        f"{time.monotonic() - started:.0f} s"
    )
    try:
        build.rename(home)  # a venv runs from a new path with `python -m`; scripts would not
    except OSError:  # another run finished first: use its venv
        run(["rm", "-rf", str(build)])
    return home / "bin" / "python"


@pytest.fixture(scope="session")
def v2_kernel() -> Path:
    return _kernel_python(V2_KERNEL)


@pytest.fixture(scope="session")
def v3_kernel() -> Path:
    return _kernel_python(V3_KERNEL)


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


def run_cell(kernel: Path, code: str, folder: Path) -> tuple[str, dict]:
    """Run ``code`` in the kernel (in ``folder``); return its output and its report line."""
    cell = folder / "notebook_cell.py"
    cell.write_text(code)
    try:
        result = subprocess.run(
            [str(kernel), str(cell)],
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


def test_the_marked_blocks_are_the_doc_s_sdk_blocks() -> None:
    local = doc_block(LOCAL_MARKER)
    for call in ('instance_type="local"', "estimator.fit(", "model.deploy(", "delete_endpoint()"):
        assert call in local, f"the tested block of {NOTEBOOK_DOC.name} no longer has {call}"
    assert "metric_definitions()" in local and 'IdentitySerializer("image/jpeg")' in local
    aws = doc_block(AWS_MARKER)
    for call in ("HyperparameterTuner(", "tuner.fit(", "model.deploy(", "predictor.predict("):
        assert call in aws, f"the v2 AWS block of {NOTEBOOK_DOC.name} no longer has {call}"
    v3 = doc_block(V3_MARKER)
    for call in ("ModelTrainer(", "tuner.tune(", "Endpoint.create(", "invoke_endpoint("):
        assert call in v3, f"the v3 block of {NOTEBOOK_DOC.name} no longer has {call}"


def test_notebook_v2_local_mode_trains_deploys_and_predicts(
    v2_kernel: Path,
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
        log, report = run_cell(v2_kernel, code + "\n" + LOCAL_HARNESS_TAIL, scratch_dir)
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


def requests_to_fake_aws(kernel: Path, block: str, settings: str, sample: Path, folder: Path):
    """Run ``block`` against the fake AWS; check the serving calls; return the first requests."""
    photo = next((sample / "test").rglob("*.jpg"))
    (folder / "my_dog.jpg").write_bytes(photo.read_bytes())
    code = FAKE_AWS_HEAD + f"REPORT_PREFIX = {REPORT_PREFIX!r}\n" + settings + block
    _, report = run_cell(kernel, code + "\n" + FAKE_AWS_TAIL, folder)

    assert report["invalid"] == [], "requests that botocore's service model refuses"
    sent: dict[str, dict] = {}
    for operation, params in report["requests"]:
        sent.setdefault(operation, params)
    done = ("CreateTrainingJob", "CreateHyperParameterTuningJob", "CreateModel", "CreateEndpoint")
    done += ("InvokeEndpoint", "DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel")
    assert set(done) <= set(sent), f"missing calls: {set(done) - set(sent)}"

    job = sent["CreateTrainingJob"]
    assert job["AlgorithmSpecification"].get("MetricDefinitions") == metric_definitions()
    assert job["AlgorithmSpecification"]["TrainingImage"] == report["images"][0]
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["training"]
    _hyperparameters(job["HyperParameters"])
    assert job["EnableManagedSpotTraining"] and job["CheckpointConfig"]["S3Uri"].endswith("/")

    tuning = sent["CreateHyperParameterTuningJob"]
    config, trial = tuning["HyperParameterTuningJobConfig"], tuning["TrainingJobDefinition"]
    objective = {"Type": OBJECTIVE_TYPE, "MetricName": OBJECTIVE_METRIC}
    assert config["HyperParameterTuningJobObjective"] == objective
    assert trial["AlgorithmSpecification"].get("MetricDefinitions") == metric_definitions()
    assert not any(key.startswith(("Debug", "Profiler")) for key in trial)
    assert trial["CheckpointConfig"]["S3Uri"] != job["CheckpointConfig"]["S3Uri"]
    _hyperparameters(trial.get("StaticHyperParameters", {}))
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
    return sent


def test_notebook_v2_aws_block_sends_what_our_images_need(
    v2_kernel: Path, sample_data: Path, scratch_dir: Path
) -> None:
    block = doc_block(AWS_MARKER)
    job = requests_to_fake_aws(v2_kernel, block, "", sample_data, scratch_dir)["CreateTrainingJob"]
    collections = [c["CollectionName"] for c in job["DebugHookConfig"]["CollectionConfigurations"]]
    assert sorted(collections) == ["gradients", "losses", "weights"], "one config per collection"
    rules = [r["RuleConfigurationName"] for r in job["DebugRuleConfigurations"]]
    assert rules == ["VanishingGradient", "Overfit", "LossNotDecreasing"]
    assert [r["RuleConfigurationName"] for r in job["ProfilerRuleConfigurations"]] == [
        "ProfilerReport"
    ]


def test_notebook_v3_block_sends_what_our_images_need(
    v3_kernel: Path, sample_data: Path, scratch_dir: Path
) -> None:
    # The v3 block uses the names the v2 block sets.
    settings = {
        "TRAIN_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-train:v1",
        "SERVE_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dogbreed-serve:v1",
        "ROLE": "arn:aws:iam::123456789012:role/MySageMakerRole",
        "DATA": "s3://my-dogbreed-bucket/dogImages/",
        "RUNS": "s3://my-dogbreed-bucket/runs/",
    }
    block = doc_block(V3_MARKER)
    requests_to_fake_aws(v3_kernel, block, settings_code(settings), sample_data, scratch_dir)
