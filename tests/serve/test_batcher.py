"""Cross-request batching with real threads and a forward function that takes real time."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from dogbreed.serve.batcher import Batcher, BatcherStopped


class SlowDouble:
    """Doubles its inputs after ``delay_s``, recording the batch sizes it saw."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.sizes: list[int] = []

    def __call__(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        self.sizes.append(len(batch))
        time.sleep(self.delay_s)
        return list(torch.stack(batch) * 2)


@contextlib.contextmanager
def announced_elsewhere(batcher: Batcher) -> Iterator[None]:
    """Another thread announces a request for the duration of the block, then leaves."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with batcher.announce():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(5)
    try:
        yield
    finally:
        leave.set()
        thread.join()


def test_lone_request_runs_at_once() -> None:
    forward = SlowDouble(delay_s=0.0)
    batcher = Batcher(forward, max_batch_size=8, max_wait_s=0.0)
    start = time.perf_counter()
    out = batcher.run([torch.tensor([1.0, 2.0])])
    assert time.perf_counter() - start < 0.05
    torch.testing.assert_close(out, [torch.tensor([2.0, 4.0])])
    assert forward.sizes == [1]
    batcher.stop()


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows() -> None:
    forward = SlowDouble(delay_s=0.03)
    batcher = Batcher(forward, max_batch_size=4)
    with ThreadPoolExecutor(16) as pool:
        outputs = list(pool.map(lambda i: batcher.run([torch.full((3,), float(i))]), range(16)))
    for i, out in enumerate(outputs):
        torch.testing.assert_close(out, [torch.full((3,), 2.0 * i)])
    assert sum(forward.sizes) == 16
    assert max(forward.sizes) == 4  # bounded, and actually batched
    assert len(forward.sizes) < 16
    assert (batcher.batches_run, batcher.items_run) == (len(forward.sizes), 16)
    batcher.stop()


def test_partial_batch_waits_for_announced_requests_only() -> None:
    forward = SlowDouble(delay_s=0.0)
    batcher = Batcher(forward, max_batch_size=4, max_wait_s=2.0)
    announced = threading.Event()
    late: list = []

    def late_request() -> None:
        with batcher.announce():
            announced.set()
            time.sleep(0.05)  # still reading its request
            late.extend(batcher.submit([torch.tensor([1.0])]))

    thread = threading.Thread(target=late_request)
    thread.start()
    announced.wait(5)
    start = time.perf_counter()
    early = batcher.run([torch.tensor([0.0])])
    thread.join()
    assert forward.sizes == [2]  # the early input waited for the announced one
    assert time.perf_counter() - start < 1.0  # and only until it came, not for max_wait_s
    assert early[0].item() == 0.0 and late[0].result(timeout=5).item() == 2.0

    forward.sizes.clear()
    with batcher.announce():  # announced, then gone without submitting (a bad request)
        pass
    batcher.run([torch.tensor([3.0])])
    assert forward.sizes == [1]
    batcher.stop()


def test_unannounced_requests_are_not_waited_for() -> None:
    forward = SlowDouble(delay_s=0.0)
    batcher = Batcher(forward, max_batch_size=4, max_wait_s=2.0)
    start = time.perf_counter()
    batcher.run([torch.tensor([1.0])])
    assert time.perf_counter() - start < 0.5
    assert forward.sizes == [1]
    batcher.stop()


def test_a_failing_batch_fails_its_requests_only() -> None:
    calls = []

    def forward(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return [t + 1 for t in batch]

    batcher = Batcher(forward, max_batch_size=2)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.run([torch.zeros(1)])
    torch.testing.assert_close(batcher.run([torch.zeros(1)]), [torch.ones(1)])
    batcher.stop()


def test_a_failed_prepare_fails_its_own_request_only_and_at_once() -> None:
    forward = SlowDouble(delay_s=0.0)

    def prepare(value: torch.Tensor) -> torch.Tensor:
        if value.item() < 0:
            raise ValueError(f"bad input {value.item()}")
        return value

    batcher = Batcher(forward, max_batch_size=4, max_wait_s=0.2, prepare=prepare)
    with announced_elsewhere(batcher):  # keeps the batch gathering while the bad input fails
        bad = batcher.submit([torch.tensor([-1.0])])[0]
        with pytest.raises(ValueError, match="bad input -1.0"):
            bad.result(timeout=0.1)  # before the batch's wait is over
        good = batcher.submit([torch.tensor([1.0])])[0]
    assert good.result(timeout=5).item() == 2.0
    assert forward.sizes == [1]  # the bad input never reached the forward pass
    batcher.stop()


def test_inputs_are_prepared_while_the_batch_gathers() -> None:
    forward = SlowDouble(delay_s=0.0)
    prepared: list[float] = []
    first_prepared = threading.Event()

    def prepare(value: torch.Tensor) -> torch.Tensor:
        prepared.append(value.item())
        first_prepared.set()
        return value + 1

    batcher = Batcher(forward, max_batch_size=4, max_wait_s=2.0, prepare=prepare)
    with announced_elsewhere(batcher):
        early = batcher.submit([torch.tensor([1.0])])[0]
        assert first_prepared.wait(5)  # prepared although its batch has not run yet
        assert not early.done() and forward.sizes == []
        late = batcher.submit([torch.tensor([2.0])])[0]
    assert (early.result(timeout=5).item(), late.result(timeout=5).item()) == (4.0, 6.0)
    assert prepared == [1.0, 2.0] and forward.sizes == [2]
    batcher.stop()


def test_on_start_runs_on_the_inference_thread() -> None:
    names: list[str] = []
    batcher = Batcher(
        lambda batch: batch,
        max_batch_size=1,
        on_start=lambda: names.append(threading.current_thread().name),
    )
    assert batcher.run(["x"]) == ["x"]
    assert names == ["dogbreed-batcher"]
    batcher.stop()


def test_timeout_cancels_work_nobody_waits_for() -> None:
    release = threading.Event()

    def forward(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        release.wait(5)
        return batch

    batcher = Batcher(forward, max_batch_size=1)
    blocker = batcher.submit([torch.zeros(1)])[0]
    with pytest.raises(TimeoutError):
        batcher.run([torch.ones(1)], timeout_s=0.05)
    release.set()
    blocker.result(timeout=5)
    batcher.stop()
    assert batcher.items_run == 1  # the timed-out input never ran


def test_stopped_batcher_refuses_work() -> None:
    batcher = Batcher(SlowDouble(0.0), max_batch_size=2)
    batcher.stop()
    with pytest.raises(BatcherStopped):
        batcher.submit([torch.zeros(1)])


def test_service_time_is_the_busy_time_per_input() -> None:
    forward = SlowDouble(delay_s=0.04)
    batcher = Batcher(forward, max_batch_size=4, prepare=lambda value: (time.sleep(0.01), value)[1])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: batcher.run([torch.zeros(1)] * 4), range(4)))
    batcher.stop()
    assert forward.sizes == [4] * 4
    # per batch of 4: 4 x 10 ms preparing + 40 ms forward = 20 ms per input
    assert 0.019 < batcher.service_time.seconds_per_input < 0.03


def test_the_rest_of_a_request_under_way_goes_ahead_of_the_queue() -> None:
    entered, release = threading.Event(), threading.Event()
    order: list[float] = []

    def forward(batch: list[torch.Tensor]) -> list[torch.Tensor]:
        entered.set()
        release.wait(5)
        order.extend(t.item() for t in batch)
        return batch

    batcher = Batcher(forward, max_batch_size=1)
    running = batcher.submit([torch.tensor(0.0)])
    assert entered.wait(5)  # the inference thread is busy with it
    queued = batcher.submit([torch.tensor(1.0), torch.tensor(2.0)])
    ahead = batcher.submit([torch.tensor(3.0), torch.tensor(4.0)], ahead=True)
    release.set()
    for future in running + queued + ahead:
        future.result(timeout=5)
    batcher.stop()
    assert order == [0.0, 3.0, 4.0, 1.0, 2.0]
