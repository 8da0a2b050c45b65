"""local_test/: train_local.sh, serve_local.sh and predict.sh against the real images."""

from __future__ import annotations

import shutil
from pathlib import Path

from e2e_support import REPO_ROOT, free_port, run

LOCAL_TEST = REPO_ROOT / "local_test"


def test_train_serve_predict_round_trip(
    train_image: str, serve_image: str, scratch_dir: Path
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
    assert (test_dir / "output" / "success").is_file()

    port, name = free_port(), f"dogbreed-e2e-local-{free_port()}"
    served = run(
        [str(LOCAL_TEST / "serve_local.sh"), "--image", serve_image, "--port", str(port),
         "--detach", "--name", name, "--gpus", "none", str(test_dir / "model")],
        timeout=300,
    )  # fmt: skip
    try:
        assert served.returncode == 0, served.stderr[-3000:]
        assert served.stdout.strip() == name
        picture = sorted((test_dir / "input" / "data" / "training" / "test").glob("*/*.jpg"))[0]
        predicted = run(
            [str(LOCAL_TEST / "predict.sh"), "--url", f"http://127.0.0.1:{port}", "--top-k", "2",
             str(picture)],
        )  # fmt: skip
        assert predicted.returncode == 0, predicted.stderr
        lines = predicted.stdout.strip().splitlines()
        assert [line.split()[0] for line in lines] == ["1.", "2."]
        breeds = {"Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"}
        assert all(line.split()[1] in breeds for line in lines), lines
    finally:
        run(["docker", "rm", "-f", name])


def test_scripts_fail_clearly(serve_image: str, scratch_dir: Path) -> None:
    not_a_model = scratch_dir / "empty"
    not_a_model.mkdir()
    served = run([str(LOCAL_TEST / "serve_local.sh"), "--image", serve_image, str(not_a_model)])
    assert served.returncode != 0
    assert "has no model.pt: not a dogbreed model directory" in served.stderr

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
