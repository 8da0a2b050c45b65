"""Hyperparameters: toolkit-style arguments, both spellings, and errors that name the problem."""

from __future__ import annotations

import time

import pytest

from dogbreed.hyperparams import HyperparameterError, parse_hyperparameters


def test_toolkit_arguments_are_parsed_and_typed() -> None:
    # The toolkit passes JSON-decoded values as strings, booleans as True/False.
    hp = parse_hyperparameters(
        [
            "--batch-size",
            "64",
            "--epochs",
            "3",
            "--lr",
            "0.003",
            "--amp",
            "False",
            "--pretrained",
            "True",
        ]
    )
    assert (hp.batch_size, hp.epochs, hp.lr, hp.amp, hp.pretrained) == (64, 3, 0.003, False, "true")


def test_batch_size_accepts_both_spellings_and_integral_floats() -> None:
    assert parse_hyperparameters(["--batch_size", "128"]).batch_size == 128
    assert parse_hyperparameters(["--batch-size", "256.0"]).batch_size == 256


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lr", "-0.1"], "lr must be a number > 0 and <= 10; got '-0.1'"),
        (["--lr", "fast"], "lr must be a number > 0 and <= 10; got 'fast'"),
        (["--batch-size", "3.5"], "batch-size must be an integer >= 1; got '3.5'"),
        (["--epochs", "0"], "epochs must be an integer >= 1; got '0'"),
        (["--optimizer", "rmsprop"], "optimizer must be one of sgd, adam, adamw; got 'rmsprop'"),
        (
            ["--trainable", "layer9"],
            "trainable must be one of all, layer1, layer2, layer3, layer4, head",
        ),
        (["--momentum", "1.0"], "momentum must be a number in [0, 1)"),
        (["--image-size", "16"], "image-size must be an integer between 32 and 1024; got '16'"),
        (["--amp", "maybe"], "amp must be true or false; got 'maybe'"),
        (["--bacth-size", "32"], "unknown hyperparameter(s) --bacth-size; allowed: lr, batch-size"),
        (["--epochs", "2", "--warmup-epochs", "2"], "warmup-epochs must be < epochs (2); got 2"),
    ],
)
def test_bad_values_name_the_hyperparameter_and_what_is_allowed(
    argv: list[str], message: str
) -> None:
    with pytest.raises(HyperparameterError) as info:
        parse_hyperparameters(argv)
    assert message in str(info.value)


def test_bad_hyperparameter_fails_the_job_before_any_work(make_job) -> None:
    job = make_job({"batch-size": "lots", "optimizer": "rmsprop"})
    started = time.monotonic()
    result = job.run(timeout=120)
    assert result.returncode == 1
    failure = job.failure()
    assert "batch-size must be an integer >= 1; got 'lots'" in failure
    # Nothing was trained or written: no checkpoint, no model, and it took no training time.
    assert not job.checkpoints.exists() and not job.model_dir.exists()
    assert time.monotonic() - started < 60
