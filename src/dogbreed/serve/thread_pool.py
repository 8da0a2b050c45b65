"""The request threads of a worker: a pool whose threads all start before the worker serves and
whose most recently idle thread takes the next connection.

- Started beforehand: gthread's own pool starts a thread the first time it has no idle one, and
  ``Thread.start`` waits until the new thread runs, which takes a turn at the GIL behind every
  thread already busy. In a spike of 512 new connections the accepting loop paid that wait per
  connection: measured on 2 cores, accepting them took 1.8 s and ``/ping``, queued in the listen
  backlog behind them, as long; with the threads started beforehand, 0.33 s.
- Last idle, first used: ``ThreadPoolExecutor`` hands tasks to its idle threads in turn, so over
  time every one of the 1,024 threads touches its stack and allocator cache (~70 KB each: a
  4-client soak grew each worker by 50-80 MB). Here light load keeps to a few hot threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Task = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class _Mailbox:
    """One pool thread's mailbox: the task it is to run next (None: exit)."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.task: Task | None = None


class LifoThreadPool:
    """A fixed set of threads, all started at once, with ``submit`` and ``shutdown`` as gthread
    uses them. Tasks beyond the idle threads queue in arrival order."""

    def __init__(self, threads: int, name: str = "request") -> None:
        self._lock = threading.Lock()
        self._idle: list[_Mailbox] = []  # a stack: the last thread to go idle is woken first
        self._backlog: deque[Task] = deque()
        self._closed = False
        for index in range(threads):
            mailbox = _Mailbox()
            threading.Thread(
                target=self._serve, args=(mailbox,), name=f"{name}-{index}", daemon=True
            ).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        task = (future, fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool is shut down")
            if not self._idle:
                self._backlog.append(task)
                return future
            mailbox = self._idle.pop()
        mailbox.task = task
        mailbox.wake.set()
        return future

    def shutdown(self, wait: bool = False) -> None:
        """Stop the idle threads now and the busy ones after their task.

        The threads are daemons: nothing waits for them (gthread passes ``wait=False``).
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for mailbox in idle:
            mailbox.task = None
            mailbox.wake.set()

    def _serve(self, mailbox: _Mailbox) -> None:
        """Run queued tasks; when there are none, wait idle (on top of the stack) for one."""
        while True:
            with self._lock:
                if self._closed:
                    return
                task = self._backlog.popleft() if self._backlog else None
                if task is None:
                    self._idle.append(mailbox)
            if task is None:
                mailbox.wake.wait()  # idle until submit or shutdown hands it something
                mailbox.wake.clear()
                task = mailbox.task
                if task is None:
                    return
            self._run(task)

    @staticmethod
    def _run(task: Task) -> None:
        future, fn, args = task
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever waits on the future, as an executor does
            future.set_exception(exc)
