"""Admission control: what is admitted, what is shed and with which Retry-After."""

from __future__ import annotations

import math
import threading
import time

import pytest

from dogbreed.serve.admission import Admission, Overloaded, ServiceTime


def test_service_time_is_a_weighted_mean_per_input_and_restarts() -> None:
    service = ServiceTime(weight=0.5)
    assert service.seconds_per_input is None
    service.observe(4, 0.4)
    assert service.seconds_per_input == pytest.approx(0.1)
    service.observe(2, 0.6)
    assert service.seconds_per_input == pytest.approx(0.2)
    service.restart()
    assert service.seconds_per_input is None


def test_requests_are_shed_once_the_queue_ahead_would_take_too_long() -> None:
    admission = Admission(max_wait_s=1.0, max_requests=math.inf, seconds_per_image=lambda: 0.1)
    with admission.admit(6), admission.admit(4):  # 0.6 s ahead of the second: admitted
        assert admission.queue_wait_s() == pytest.approx(1.0)
        with admission.admit(100):  # its own size is not a wait: admitted
            with pytest.raises(Overloaded, match=r"~11\.0s.*1s") as shed, admission.admit(1):
                pass
            assert shed.value.retry_after_s == 10  # until the queue ahead is back under 1 s
        with admission.admit(1):  # 1.0 s ahead: not over the limit
            pass
    assert admission.queue_wait_s() == 0


def test_requests_are_shed_beyond_the_waiting_limit_and_places_come_back() -> None:
    admission = Admission(max_wait_s=1.0, max_requests=2, seconds_per_image=lambda: None)
    with admission.admit(1), admission.admit(1):
        with pytest.raises(Overloaded, match="2 requests") as shed, admission.admit(1):
            pass
        assert shed.value.retry_after_s == 1
    with pytest.raises(RuntimeError), admission.admit(500):
        raise RuntimeError("a failed request gives its place back")
    with admission.admit(1), admission.admit(1):
        pass


def test_concurrent_admissions_never_exceed_the_limit() -> None:
    admission = Admission(max_wait_s=60, max_requests=3, seconds_per_image=lambda: 0.001)
    inside, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()
    outcomes: list[str] = []

    def request() -> None:
        try:
            with admission.admit(1):
                with lock:
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                release.wait(5)
                with lock:
                    inside[0] -= 1
            outcomes.append("admitted")
        except Overloaded:
            outcomes.append("shed")

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while len(outcomes) < 7 and time.monotonic() < deadline:  # the shed answer at once
        time.sleep(0.01)
    assert outcomes == ["shed"] * 7  # while 3 are still inside
    release.set()
    for thread in threads:
        thread.join(5)
    assert sorted(outcomes) == ["admitted"] * 3 + ["shed"] * 7
    assert peak[0] == 3
