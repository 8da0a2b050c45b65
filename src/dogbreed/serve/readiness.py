"""Which workers have their model loaded, shared by all of them: /ping is 200 only when all have.

A load balancer's ping lands on one worker at random; if that worker alone decided, an instance
could report ready while another worker still answers 503. The master creates a small shared
array before forking; a worker writes its pid there once warm, and the master clears the pid when
that worker exits.
"""

from __future__ import annotations

import multiprocessing


class ReadyWorkers:
    """Pids of the workers that are ready, in memory shared across ``fork``."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # Room for a full second generation of workers during a graceful reload.
        self._pids = multiprocessing.get_context("fork").Array("l", 2 * workers)

    def mark_ready(self, pid: int) -> None:
        with self._pids.get_lock():
            if pid in self._pids[:]:
                return
            for slot, value in enumerate(self._pids[:]):
                if value == 0:
                    self._pids[slot] = pid
                    return

    def forget(self, pid: int) -> None:
        with self._pids.get_lock():
            for slot, value in enumerate(self._pids[:]):
                if value == pid:
                    self._pids[slot] = 0

    def count(self) -> int:
        return sum(1 for pid in self._pids[:] if pid)

    def all_ready(self) -> bool:
        return self.count() >= self.workers
