"""A files-and-megabytes progress display: one redrawn line on a terminal, periodic lines in a log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
LOG_INTERVAL_S = 10.0
MB = 1e6


class Progress:
    """Counts files and bytes done out of a total and shows them with the rate so far.

    On a terminal the line is redrawn in place (at most ten times a second); otherwise a line is
    written every ``interval`` seconds, so that a CI log or a notebook shows steady progress.
    """

    def __init__(
        self,
        files: int,
        size: int,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        interval: float = LOG_INTERVAL_S,
    ) -> None:
        self.files, self.size = files, size
        self.stream, self.clock = stream, clock
        self.tty = stream.isatty()
        self.interval = 0.1 if self.tty else interval
        self.done_files = self.done_size = 0
        self.started = self.shown_at = clock()

    def advance(self, size: int) -> None:
        self.done_files += 1
        self.done_size += size
        if self.clock() - self.shown_at >= self.interval:
            self.show()

    def finish(self) -> None:
        self.show()
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def show(self) -> None:
        self.shown_at = self.clock()
        line = self.line()
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()

    def line(self) -> str:
        fraction = self.done_size / self.size if self.size else 1.0
        filled = round(fraction * BAR_WIDTH)
        elapsed = max(self.clock() - self.started, 1e-9)
        return (
            f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {self.done_files}/{self.files} files  "
            f"{self.done_size / MB:.1f}/{self.size / MB:.1f} MB  "
            f"{self.done_size / MB / elapsed:.1f} MB/s"
        )
