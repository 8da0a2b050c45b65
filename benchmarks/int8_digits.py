"""int8 against fp32 on real images: scikit-learn's handwritten digit scans at 224 px.

The same data, hyperparameters and exporter as ``make int8-check``
(tests/train/test_export.py::test_int8_keeps_fp32_accuracy_on_handwritten_digits_at_224_px), for a
machine without the training toolkit (a GPU machine's own python): the job runs through
``dogbreed.train.ranks`` as ``train`` would start it, then ``python -m dogbreed.export`` converts the
artifact, evaluating on every one of the 1,197 images not trained on. Then the int8 model is served
(``dogbreed-serve`` on ONNX Runtime, 127.0.0.1) and every held-out image posted to it: its top-1
accuracy over HTTP is printed beside the export's in-process one, and the run fails if they differ.

    python benchmarks/int8_digits.py [--trainable layer3|all] [--epochs 4]

``DOGBREED_ONNX_SITE`` names a folder holding onnx and onnxruntime (default build/onnx-site).
Figures go to ``$OUT/int8-digits-<trainable>.json`` where OUT is set, else build/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_support import ServerUnderTest, free_port

from dogbreed.artifact import load_spec
from dogbreed.splits import class_label
from dogbreed.train.sample_data import INT8_CHECK_HYPERPARAMETERS, INT8_CHECK_SPLITS, write_digits

REPO = Path(__file__).resolve().parents[1]


def hyperparameters(trainable: str, epochs: int) -> dict[str, str]:
    """The int8 check's hyperparameters, with ``trainable`` and ``epochs`` chosen."""
    return {
        **INT8_CHECK_HYPERPARAMETERS,
        "epochs": str(epochs),
        "trainable": trainable,
        "pretrained": "false",
        "export": "false",
    }


def run(command: list[str], env: dict[str, str], log: Path, timeout: float) -> float:
    """Run ``command`` to completion (output to ``log``); its seconds, or exit naming the log."""
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}... exited {done.returncode}:\n{log.read_text()[-4000:]}")
    return time.perf_counter() - started


def served_accuracy(serve: Path, model_dir: Path, images: list[Path], log: Path) -> float:
    """Top-1 accuracy of the int8 model served over HTTP, one request per image."""
    env = {"DOGBREED_RUNTIME": "onnx", "DOGBREED_PRECISION": "int8", "CUDA_VISIBLE_DEVICES": ""}
    server = ServerUnderTest(model_dir, free_port(), env, log, serve)
    correct = 0
    try:
        server.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for path in images:
            conn.request("POST", "/invocations", path.read_bytes(), {"Content-Type": "image/png"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                sys.exit(f"{path}: HTTP {response.status} {body[:300]!r}")
            label = json.loads(body)["predictions"][0][0]["label"]
            correct += label == class_label(path.parent.name)
    finally:
        server.stop()
    if "serving model.int8.onnx with ONNX Runtime" not in log.read_text():
        sys.exit(f"the server did not serve model.int8.onnx:\n{log.read_text()[-3000:]}")
    return correct / len(images)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trainable", default="layer3", help="first stage trained (default layer3)"
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument(
        "--serve",
        type=Path,
        default=Path(sys.executable).with_name("dogbreed-serve"),
        help="a dogbreed-serve with onnxruntime (default: beside this python; .venv-slim's here)",
    )
    args = parser.parse_args()
    site = os.environ.get("DOGBREED_ONNX_SITE") or str(REPO / "build" / "onnx-site")
    with tempfile.TemporaryDirectory(prefix="int8-digits-") as tmp:
        base = Path(tmp) / "opt" / "ml"
        data = base / "input" / "data" / "training"
        write_digits(data, INT8_CHECK_SPLITS)
        held_out = Path(tmp) / "held-out"
        for split in ("valid", "test", "rest"):
            shutil.copytree(data / split, held_out, dirs_exist_ok=True)
        shutil.rmtree(data / "rest")
        hp = hyperparameters(args.trainable, args.epochs)
        train = [sys.executable, "-m", "dogbreed.train.ranks", "--nproc-per-node=1", "--standalone"]
        train += ["-m", "dogbreed.train", *(w for k, v in hp.items() for w in (f"--{k}", v))]
        env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "DOGBREED_ONNX_SITE": site}
        train_s = run(train, env, Path(tmp) / "train.log", 3600)
        model_dir = base / "model"
        export = [sys.executable, "-m", "dogbreed.export", str(model_dir)]
        export += ["--train", str(data / "train"), "--valid", str(held_out)]
        export_s = run(export, env, Path(tmp) / "export.log", 3600)
        spec = load_spec(model_dir)
        images = sorted(held_out.glob("*/*.png"))
        served = served_accuracy(args.serve, model_dir, images, Path(tmp) / "serve.log")
    onnx = spec.onnx
    figures = {
        "hyperparameters": hp,
        "train_seconds": round(train_s, 1),
        "export_seconds": round(export_s, 1),
        "torch_test_accuracy": spec.metrics.get("test_accuracy"),
        "images_per_point": onnx["validation_images"] / 100,
        **onnx,
        "served_int8_accuracy": served,
        "served_images": len(images),
    }
    out_dir = Path(os.environ.get("OUT") or REPO / "build")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"int8-digits-{args.trainable}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    print(json.dumps(figures, indent=2, default=str))
    print(f"int8-digits: figures written to {path}")
    if served != onnx["int8_accuracy"] or len(images) != onnx["validation_images"]:
        sys.exit(
            f"served int8 accuracy {served:.4f} on {len(images)} images differs from the in-process"
            f" {onnx['int8_accuracy']:.4f} on {onnx['validation_images']}"
        )
    print(f"served over HTTP: {served:.4f} on {len(images)} images, equal to in process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
