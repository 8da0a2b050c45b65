"""The request thread pool under gthread: all threads up front, the last idle one used first."""

from __future__ import annotations

import threading
import time

import pytest

from dogbreed.serve.thread_pool import LifoThreadPool


def test_threads_start_up_front_and_light_load_keeps_to_the_hottest() -> None:
    before = threading.active_count()
    pool = LifoThreadPool(16, name="test-pool")
    assert threading.active_count() - before == 16
    names = {pool.submit(lambda: threading.current_thread().name).result(5) for _ in range(50)}
    assert len(names) == 1  # one request at a time: always the same thread
    pool.shutdown()


def test_tasks_beyond_the_threads_queue_in_order_and_failures_reach_the_caller() -> None:
    pool = LifoThreadPool(1)
    release = threading.Event()
    done: list[int] = []

    def task(n: int) -> int:
        release.wait(5)
        done.append(n)
        return n * 10

    futures = [pool.submit(task, n) for n in range(6)]
    time.sleep(0.05)
    assert done == []  # one running, five queued
    release.set()
    assert [f.result(5) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert done == [0, 1, 2, 3, 4, 5]

    def fail() -> None:
        raise ValueError("bad request")

    with pytest.raises(ValueError, match="bad request"):
        pool.submit(fail).result(5)
    pool.shutdown()


def test_shutdown_ends_idle_threads_and_refuses_work() -> None:
    before = threading.active_count()
    pool = LifoThreadPool(8)
    pool.shutdown()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(print)
