"""local_test/: train_local.sh, serve_local.sh and predict.sh against the real images."""

from __future__ import annotations

import shutil
from pathlib import Path

from e2e_support import REPO_ROOT, free_port, run

LOCAL_TEST = REPO_ROOT / "local_test"


def serve_and_predict(options: list[str], model: Path, picture: Path) -> list[str]:
    """serve_local.sh --detach with ``options``, then predict.sh --top-k 2: its output lines."""
    port, name = free_port(), f"dogbreed-e2e-local-{free_port()}"
    served = run(
        [str(LOCAL_TEST / "serve_local.sh"), *options, "--port", str(port), "--detach",
         "--name", name, str(model)],
        timeout=300,
    )  # fmt: skip
    try:
        assert served.returncode == 0, served.stderr[-3000:]
        assert served.stdout.strip() == name
        predicted = run(
            [str(LOCAL_TEST / "predict.sh"), "--url", f"http://127.0.0.1:{port}", "--top-k", "2",
             str(picture)],
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr
        return predicted.stdout.strip().splitlines()
    finally:
        run(["docker", "rm", "-f", name])


def test_train_serve_predict_round_trip(
    train_image: str, serve_image: str, slim_image: str, scratch_dir: Path
) -> None:
    test_dir = scratch_dir / "test_dir"
    shutil.copytree(LOCAL_TEST / "test_dir" / "input" / "config", test_dir / "input" / "config")

    trained = run(
        [str(LOCAL_TEST / "train_local.sh"), "--image", train_image, "--test-dir", str(test_dir),
         "--hp", "epochs=1", "--gpus", "none"],
        timeout=900,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "filling" in trained.stderr and "sample data" in trained.stderr
    assert "training with pretrained=false" in trained.stderr  # the e2e image has no baked weights
    assert "docker run --rm --network none --hostname algo-1" in trained.stderr
    assert (test_dir / "model" / "model.pt").is_file()
    assert (test_dir / "model" / "model.onnx").is_file()  # the job exports by default
    assert (test_dir / "output" / "success").is_file()

    picture = sorted((test_dir / "input" / "data" / "training" / "test").glob("*/*.jpg"))[0]
    breeds = {"Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"}
    for options in (["--image", serve_image, "--gpus", "none"], ["--slim", "--image", slim_image]):
        lines = serve_and_predict(options, test_dir / "model", picture)
        assert [line.split()[0] for line in lines] == ["1.", "2."], options
        assert all(line.split()[1] in breeds for line in lines), (options, lines)


def test_scripts_fail_clearly(serve_image: str, scratch_dir: Path) -> None:
    not_a_model = scratch_dir / "empty"
    not_a_model.mkdir()
    served = run([str(LOCAL_TEST / "serve_local.sh"), "--image", serve_image, str(not_a_model)])
    assert served.returncode != 0
    assert "has no model.pt: not a dogbreed model directory" in served.stderr

    (not_a_model / "model.json").write_text("{}")
    slim = [str(LOCAL_TEST / "serve_local.sh"), "--slim", "--image", serve_image]
    no_onnx = run([*slim, str(not_a_model)])
    assert no_onnx.returncode != 0
    assert "has no model.onnx, which the slim image serves" in no_onnx.stderr
    assert f"dogbreed-export {not_a_model} --data DIR" in no_onnx.stderr
    (not_a_model / "model.onnx").write_bytes(b"")
    (not_a_model / "model.onnx").chmod(0o600)
    private = run([*slim, str(not_a_model)])
    assert private.returncode != 0
    assert f"{not_a_model / 'model.onnx'} is mode 600" in private.stderr
    assert "chmod a+rX" in private.stderr
    on_gpu = run([*slim, "--gpus", "all", str(not_a_model)])
    assert on_gpu.returncode != 0 and "CPU only" in on_gpu.stderr

    missing = run([str(LOCAL_TEST / "train_local.sh"), "--image", "dogbreed-train:no-such-tag"])
    assert missing.returncode != 0
    assert "no image dogbreed-train:no-such-tag" in missing.stderr

    picture = scratch_dir / "dog.jpg"
    picture.write_bytes(b"\xff\xd8 not really")
    closed = run([str(LOCAL_TEST / "predict.sh"), "--url", f"http://127.0.0.1:{free_port()}",
                  str(picture)])  # fmt: skip
    assert closed.returncode != 0
    assert "cannot reach" in closed.stderr

    no_file = run([str(LOCAL_TEST / "predict.sh"), str(scratch_dir / "missing.jpg")])
    assert no_file.returncode != 0 and "no such file" in no_file.stderr
