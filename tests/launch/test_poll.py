"""The launcher's one polling loop: it returns the first answer, stops at a failure, and gives up
after its timeout with a message that names what it waited for. A fake clock: no real sleeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dogbreed.launch.errors import LaunchError
from dogbreed.launch.poll import poll
from dogbreed.launch.training.jobs import wait_timeout_s
from dogbreed.launch.training.tune import tuning_timeout_s


class FakeClock:
    """A clock that only moves when ``sleep`` is called; it records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def answers(*values: str | None) -> Iterator[str | None]:
    return iter(values)


def test_poll_returns_the_first_answer_sleeping_between_probes() -> None:
    clock, probes = FakeClock(), answers(None, None, "Completed")
    result = poll(lambda: next(probes), "job x", 100, 30, clock=clock, sleep=clock.sleep)
    assert result == "Completed"
    assert clock.sleeps == [30, 30]


def test_poll_gives_up_after_its_timeout_naming_what_it_waited_for() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def probe() -> None:
        calls.append(clock.now)

    with pytest.raises(LaunchError, match=r"gave up after 70 s waiting for training job x to end"):
        poll(probe, "training job x to end", 70, 30, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [30, 30, 10]  # the last sleep ends at the deadline, not past it
    assert calls == [1000, 1030, 1060, 1070]


def test_a_probe_that_raises_stops_the_wait() -> None:
    clock = FakeClock()

    def probe() -> None:
        raise LaunchError("transform job x failed")

    with pytest.raises(LaunchError, match="transform job x failed"):
        poll(probe, "transform job x", 60, 30, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_poll_sleeps_with_time_sleep_by_default(monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    probes = answers(None, "done")
    assert poll(lambda: next(probes), "job x", 60, 0.001) == "done"
    assert slept == [0.001]


def test_a_wait_allows_a_job_its_stopping_condition_and_an_hour() -> None:
    assert wait_timeout_s({"MaxRuntimeInSeconds": 14400}) == 14400 + 3600
    spot = {"MaxRuntimeInSeconds": 14400, "MaxWaitTimeInSeconds": 28800}
    assert wait_timeout_s(spot) == 28800 + 3600


def test_a_tuning_wait_allows_every_round_of_parallel_trials() -> None:
    request = {
        "HyperParameterTuningJobConfig": {
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 2}
        },
        "TrainingJobDefinition": {"StoppingCondition": {"MaxRuntimeInSeconds": 600}},
    }
    assert tuning_timeout_s(request) == 3 * (600 + 3600)
