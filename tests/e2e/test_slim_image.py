"""The slim serve image (ONNX Runtime, no torch) on a real Docker engine: size, cold start, user,
unreadable and missing models, a soak under 1 GB, and accuracy over HTTP.

Run with ``-s`` to see the figures (each test prints them; the e2e summary repeats them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
from e2e_support import Container, free_port, run, wait_for_http

from dogbreed.artifact import ModelSpec, load_spec, save_artifact
from dogbreed.model import build_model
from tests.serve.conftest import export_onnx, jpeg_bytes, slim_in_process_probabilities

SERVER_UID = 10001
MAX_IMAGE_MB = 400
COLD_START_GOAL_S = 1.5
#: What the server may add to the floor (a container that imports ONNX Runtime and exits) before
#: this test fails: the goal above is absolute and judged in the printed line, but a shared or
#: slow machine moves the floor itself (1.1-2.1 s at load average 6-9 here), the server's own
#: part much less (imports, session, one image: 0.6-1.2 s).
SERVER_OVER_FLOOR_S = 1.5
COLD_START_RUNS = 3
#: A hard ceiling on each wait for /ping; the figure is judged against the goal above.
READY_LIMIT_S = 60.0
#: Serverless Inference's smallest memory size.
SOAK_MEMORY = "1g"
SOAK_REQUESTS = 2000
SOAK_CLIENTS = 4  # as tests/serve/test_soak.py
SOAK_WARMUP = 200
MAX_WORKER_RSS_MB = 250
MAX_RSS_GROWTH_MB = 20
#: JPEG sizes (width, height) the soak cycles through: thumbnails to photos.
SOAK_SIZES = [(96, 72), (224, 224), (320, 240), (500, 375), (640, 480), (1024, 768)]
#: Reads each process of the container: pid, parent, uids (real, effective, saved, fs), VmRSS.
PROCESSES = """
import glob, json, os
rows = []
for status in glob.glob('/proc/[0-9]*/status'):
    try:
        fields = dict(line.split(':', 1) for line in open(status))
        args = open(status[:-6] + 'cmdline', 'rb').read().replace(b'\\0', b' ').decode().strip()
    except OSError:
        continue
    rows.append({'pid': int(fields['Pid']), 'ppid': int(fields['PPid']), 'args': args,
                 'uids': [int(u) for u in fields['Uid'].split()],
                 'rss_kb': int(fields.get('VmRSS', '0 kB').split()[0])})
print(json.dumps([r for r in rows if r['pid'] != os.getpid()]))
"""


def public_dir(prefix: str) -> Path:
    """A folder under /tmp that the server's uid can enter (pytest's tmp folders are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def model_224() -> Iterator[Path]:
    """ResNet18, 133 classes, 224 px, random weights, with fp32 and int8 (forced) ONNX files."""
    root = public_dir("dogbreed-slim-model-")
    torch.manual_seed(0)
    classes = [f"Breed_{i:03d}" for i in range(133)]
    spec = ModelSpec(classes, 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    save_artifact(root / "model", build_model(len(classes)), spec)
    for split_index, split in enumerate(("train", "valid")):  # one image a class: calibration
        for index, name in enumerate(classes):
            folder = root / "data" / split / f"{index + 1:03d}.{name}"
            folder.mkdir(parents=True)
            seed = 1000 * split_index + index
            (folder / "0.jpg").write_bytes(jpeg_bytes(seed, size=(96, 80)))
    export_onnx(root / "model", root / "data", "--int8-max-drop", "100")
    (root / "model").chmod(0o755)
    yield root / "model"
    shutil.rmtree(root, ignore_errors=True)


def serve_args(model_dir: Path, port: int, *options: str) -> list[str]:
    return [*options, "-p", f"127.0.0.1:{port}:8080", "-v", f"{model_dir}:/opt/ml/model:ro"]


def wait_ready(server: Container, port: int) -> float:
    try:
        return wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=READY_LIMIT_S)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{server.read_logs()[-3000:]}")


def processes(server: Container) -> list[dict]:
    """Every process in the container but the reader itself, read from its /proc."""
    result = run(["docker", "exec", server.name, "python3", "-c", PROCESSES], timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def worker_rss_mb(server: Container) -> dict[int, float]:
    """VmRSS of each gunicorn worker (the master's children; the master is pid 1)."""
    return {p["pid"]: p["rss_kb"] / 1024 for p in processes(server) if p["ppid"] == 1}


def image_mb(image: str) -> float:
    result = run(["docker", "image", "inspect", "--format", "{{.Size}}", image])
    assert result.returncode == 0, result.stderr
    return int(result.stdout) / 1e6


def test_slim_image_size(slim_image: str, slim_base_image: str, figures: dict) -> None:
    size, base = image_mb(slim_image), image_mb(slim_base_image)
    line = f"{size:.0f} MB (goal <= {MAX_IMAGE_MB} MB); its base {slim_base_image}: {base:.0f} MB"
    print(f"\nslim image {slim_image}: {line}")
    figures["slim image size"] = line
    assert size <= MAX_IMAGE_MB


def test_slim_cold_start(slim_image: str, model_224: Path, figures: dict) -> None:
    """``docker run ... serve`` to /ping 200 (polled every 50 ms), as bench_cold_start.py times it;
    beside each, the floor no server beats: a container that imports ONNX Runtime and exits."""
    run(["docker", "run", "--rm", "--entrypoint", "true", slim_image])  # page the image in once
    readies, floors = [], []
    for _ in range(COLD_START_RUNS):
        start = time.monotonic()
        floor = run(["docker", "run", "--rm", "--entrypoint", "python3", slim_image, "-c",
                     "import onnxruntime"], timeout=120)  # fmt: skip
        assert floor.returncode == 0, floor.stderr
        floors.append(time.monotonic() - start)
        port = free_port()
        start = time.monotonic()
        with Container([*serve_args(model_224, port), slim_image, "serve"]) as server:
            wait_ready(server, port)
            readies.append(time.monotonic() - start)
    median, floor = statistics.median(readies), statistics.median(floors)
    line = (
        f"median {median:.2f} s of {', '.join(f'{s:.2f}' for s in readies)} s (goal <= "
        f"{COLD_START_GOAL_S} s: {'met' if median <= COLD_START_GOAL_S else 'MISSED'}); floor "
        f"(docker run + import onnxruntime) median {floor:.2f} s; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"\nslim cold start, 224 px int8: {line}")
    figures["slim cold start (docker run ... serve -> /ping 200)"] = line
    assert median <= COLD_START_GOAL_S or median - floor <= SERVER_OVER_FLOOR_S, line


def test_slim_server_runs_as_non_root(slim_image: str, model_224: Path) -> None:
    port = free_port()
    with Container([*serve_args(model_224, port), slim_image, "serve"]) as server:
        wait_ready(server, port)
        seen = processes(server)
        top = run(["docker", "top", server.name, "-o", "uid,pid,args"], timeout=60)
    server_procs = [p for p in seen if p["pid"] == 1 or p["ppid"] == 1]
    print("\nslim server processes (uid real/effective/saved/fs):")
    for p in server_procs:
        print(f"  pid {p['pid']} ppid {p['ppid']} uids {p['uids']}: {p['args']}")
    # `dogbreed-serve`, or `python -m dogbreed.serve.server` where it re-executes with tcmalloc
    assert re.search(r"dogbreed[-.]serve", server_procs[0]["args"]), server_procs
    assert server_procs[0]["pid"] == 1, server_procs
    assert len(server_procs) >= 2, f"no gunicorn worker under the master: {seen}"
    assert all(p["uids"] == [SERVER_UID] * 4 for p in server_procs), server_procs
    # The host's view of the same processes (docker top), independent of the container's /proc.
    host_uids = {line.split()[0] for line in top.stdout.splitlines()[1:]}
    assert top.returncode == 0 and host_uids == {str(SERVER_UID)}, top.stdout


def serve_until_exit(image: str, model_dir: Path, timeout: float = 120) -> tuple[int, str]:
    """``docker run ... serve`` on ``model_dir`` to its exit: exit code and log."""
    args = ["--network", "none", "-v", f"{model_dir}:/opt/ml/model:ro", image, "serve"]
    with Container(args) as server:
        deadline = time.monotonic() + timeout
        while server.running():
            assert time.monotonic() < deadline, f"still serving after {timeout:.0f} s"
            time.sleep(0.2)
        code = run(["docker", "inspect", "--format", "{{.State.ExitCode}}", server.name])
        return int(code.stdout), server.read_logs()


def test_unreadable_model_names_file_and_mode(slim_image: str, model_224: Path) -> None:
    model_dir = public_dir("dogbreed-slim-unreadable-")
    try:
        for name in ("model.json", "model.int8.onnx"):
            shutil.copy(model_224 / name, model_dir / name)
        (model_dir / "model.int8.onnx").chmod(0o600)
        code, log = serve_until_exit(slim_image, model_dir)
    finally:
        shutil.rmtree(model_dir)
    print(f"\nunreadable model: exit {code}; {log.strip().splitlines()[-4:]}")
    assert code != 0
    want = f"cannot read /opt/ml/model/model.int8.onnx (mode 0600, owner uid {os.getuid()})"
    assert f"{want} as uid {SERVER_UID}: Permission denied" in log, log[-3000:]


def test_model_without_onnx_names_the_exporter(slim_image: str, model_224: Path) -> None:
    model_dir = public_dir("dogbreed-slim-no-onnx-")
    try:
        for name in ("model.json", "model.pt"):
            shutil.copy(model_224 / name, model_dir / name)
        code, log = serve_until_exit(slim_image, model_dir)
    finally:
        shutil.rmtree(model_dir)
    print(f"\nmodel without ONNX: exit {code}; {log.strip()}")
    assert code == 2
    assert "holds no model.onnx" in log and "`dogbreed-export`" in log, log[-3000:]


def soak_requests() -> list[tuple[bytes, str]]:
    """As test_soak.py: single JPEGs of mixed sizes, every tenth a JSON batch of four."""
    images = [jpeg_bytes(seed, size=SOAK_SIZES[seed % len(SOAK_SIZES)]) for seed in range(24)]
    batch = json.dumps({"images": [base64.b64encode(i).decode() for i in images[:4]]}).encode()
    return [
        (batch, "application/json") if n % 10 == 0 else (images[n % len(images)], "image/jpeg")
        for n in range(SOAK_REQUESTS)
    ]


def send_all(url: str, work: list[tuple[bytes, str]]) -> list[int]:
    """POST ``work`` from SOAK_CLIENTS keep-alive sessions; every status code."""

    def client(share: list[tuple[bytes, str]]) -> list[int]:
        with requests.Session() as session:
            return [
                session.post(url, data=body, headers={"Content-Type": kind}, timeout=60).status_code
                for body, kind in share
            ]

    with ThreadPoolExecutor(SOAK_CLIENTS) as pool:
        shares = [work[i::SOAK_CLIENTS] for i in range(SOAK_CLIENTS)]
        return [code for codes in pool.map(client, shares) for code in codes]


def test_soak_under_1g_keeps_worker_memory_bounded(
    slim_image: str, model_224: Path, figures: dict
) -> None:
    work = soak_requests()
    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    args = serve_args(model_224, port, "--memory", SOAK_MEMORY)
    with Container([*args, slim_image, "serve"]) as server:
        wait_ready(server, port)
        assert set(send_all(url, work[:SOAK_WARMUP])) == {200}  # allocator pools settle
        before = worker_rss_mb(server)
        start = time.monotonic()
        statuses = send_all(url, work)
        seconds = time.monotonic() - start
        after = worker_rss_mb(server)
        stats = run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", server.name])
        log = server.read_logs()
    rss = ", ".join(f"{pid}: {before[pid]:.1f} -> {after.get(pid, 0):.1f}" for pid in before)
    line = (
        f"{statuses.count(200)}/{SOAK_REQUESTS} answered 200 in {seconds:.0f} s; worker VmRSS "
        f"(MiB, /proc/<pid>/status in the container) before -> after: {rss}; container memory "
        f"(docker stats) {stats.stdout.strip()}"
    )
    print(f"\nslim soak under --memory {SOAK_MEMORY}: {line}")
    figures["slim soak under --memory 1g"] = line
    assert statuses.count(200) == SOAK_REQUESTS, log[-3000:]
    assert after.keys() == before.keys(), f"a worker was replaced during the soak:\n{log[-3000:]}"
    assert max(after.values()) <= MAX_WORKER_RSS_MB
    assert max(after[pid] - before[pid] for pid in before) < MAX_RSS_GROWTH_MB


def served_top1(port: int, image: Path, classes: int) -> tuple[str, dict[str, float]]:
    """The top label and every class's probability, as the server answers for ``image``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=image.read_bytes(),
        headers={
            "Content-Type": "image/jpeg",
            "X-Amzn-SageMaker-Custom-Attributes": f"top_k={classes}",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        predictions = json.load(response)["predictions"][0]
    return predictions[0]["label"], {p["label"]: p["probability"] for p in predictions}


def served_and_local_accuracy(
    image: str, model_dir: Path, model_file: str, images: list[Path]
) -> tuple[float, float]:
    """Top-1 accuracy of ``model_file`` served by ``image`` over HTTP, and run in process (the
    slim venv); asserts that the server serves that file and each probability within 1e-5."""
    spec = load_spec(model_dir)
    truth = [spec.class_names[int(p.parent.name.split(".")[0]) - 1] for p in images]
    in_process = slim_in_process_probabilities(model_dir, model_file, images)
    port = free_port()
    with Container([*serve_args(model_dir, port), image, "serve"]) as server:
        wait_ready(server, port)
        served = [served_top1(port, path, spec.num_classes) for path in images]
        log = server.read_logs()
    assert f"serving {model_file} with ONNX Runtime" in log, log[-3000:]
    for path, (_, probabilities) in zip(images, served, strict=True):
        want = dict(zip(spec.class_names, in_process[path].tolist(), strict=True))
        assert probabilities == pytest.approx(want, abs=1e-5), path.name
    local = [spec.class_names[int(np.argmax(in_process[p]))] for p in images]
    return (
        float(np.mean([label == t for (label, _), t in zip(served, truth, strict=True)])),
        float(np.mean([label == t for label, t in zip(local, truth, strict=True)])),
    )


def test_served_accuracy_equals_in_process(
    slim_image: str, trained_job, sample_data: Path, figures: dict
) -> None:
    """The trained job's model over HTTP from the slim image scores what it scores in process:
    the int8 model it shipped, or (where it shipped none) fp32 and int8 forced on a copy."""
    assert trained_job.returncode == 0, trained_job.log[-3000:]
    onnx = load_spec(trained_job.model_dir).onnx or {}
    models = {"model.onnx": trained_job.model_dir}
    forced = public_dir("dogbreed-slim-int8-")
    try:
        if "model.int8.onnx" in onnx.get("files", []):
            models = {"model.int8.onnx": trained_job.model_dir}
        else:
            print(f"\nthe trained job shipped no int8 model ({onnx.get('int8_note')}): fp32 "
                  "compared, and int8 exported on a copy with --int8-max-drop 100")  # fmt: skip
            shutil.copytree(trained_job.model_dir, forced / "model")
            export_onnx(forced / "model", sample_data, "--int8-max-drop", "100")
            models["model.int8.onnx"] = forced / "model"
        images = sorted((sample_data / "test").glob("*/*.jpg"))
        results = {
            name: served_and_local_accuracy(slim_image, model_dir, name, images)
            for name, model_dir in models.items()
        }
    finally:
        shutil.rmtree(forced, ignore_errors=True)
    line = "; ".join(
        f"{name}: served over HTTP {served:.4f}, in process {local:.4f}"
        for name, (served, local) in results.items()
    )
    line += (
        f"; on {len(images)} test images (one image = {100 / len(images):.2f} points); "
        f"the job's model.json: fp32 {onnx.get('fp32_accuracy')}, int8 "
        f"{onnx.get('int8_accuracy')} on {onnx.get('validation_images')} validation images"
    )
    print(f"\nslim accuracy: {line}")
    figures["slim accuracy over HTTP vs in process"] = line
    for served, local in results.values():
        assert served == local
