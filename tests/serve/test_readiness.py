"""The shared record of ready workers, across a real fork."""

from __future__ import annotations

import os

from dogbreed.serve.readiness import ReadyWorkers


def test_a_forked_worker_marks_itself_ready_for_everyone() -> None:
    ready = ReadyWorkers(workers=2)
    assert not ready.all_ready()
    pid = os.fork()
    if pid == 0:  # the "worker"
        ready.mark_ready(os.getpid())
        os._exit(0)
    os.waitpid(pid, 0)
    assert ready.count() == 1
    ready.mark_ready(os.getpid())
    ready.mark_ready(os.getpid())  # idempotent
    assert ready.count() == 2
    assert ready.all_ready()
    ready.forget(pid)  # the master saw that worker exit
    assert (ready.count(), ready.all_ready()) == (1, False)
