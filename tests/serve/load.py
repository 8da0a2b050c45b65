"""Load-test tools: ``hey`` as the load generator (with its CPU use) and a /ping prober."""

from __future__ import annotations

import re
import resource
import shutil
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests

HEY = shutil.which("hey")
#: SageMaker waits this long for an invocation; the client gives up no sooner.
CLIENT_TIMEOUT_S = 60


@dataclass
class HeyReport:
    """What one ``hey`` run saw: status census, connection errors, time, and its own CPU use."""

    statuses: Counter[int]
    errors: dict[str, int]
    wall_s: float
    slowest_s: float
    cpu_s: float

    def rate(self, status: int = 200) -> float:
        """Responses with ``status`` per second over the whole run."""
        return self.statuses[status] / self.wall_s

    @classmethod
    def parse(cls, text: str, cpu_s: float) -> HeyReport:
        def seconds(name: str) -> float:
            match = re.search(rf"{name}:\s+([\d.]+) secs", text)
            assert match, f"no {name} in hey's output:\n{text}"
            return float(match.group(1))

        statuses = Counter(
            {int(code): int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
        )
        _, _, error_part = text.partition("Error distribution:")
        errors = {
            message: int(n) for n, message in re.findall(r"^\s+\[(\d+)\]\s+(.+)$", error_part, re.M)
        }
        return cls(statuses, errors, seconds("Total"), seconds("Slowest"), cpu_s)


def run_hey(url: str, body: Path, clients: int, seconds: int) -> HeyReport:
    """POST ``body`` as image/jpeg from ``clients`` keep-alive connections for ``seconds``.

    ``hey`` stops sending after ``seconds`` and waits for the answers in flight (each at most
    CLIENT_TIMEOUT_S); its CPU time comes from the rusage of this process's reaped children.
    """
    assert HEY, "hey is not installed (apt-get install hey)"
    command = [HEY, "-c", str(clients), "-z", f"{seconds}s", "-t", str(CLIENT_TIMEOUT_S)]
    command += ["-m", "POST", "-T", "image/jpeg", "-D", str(body), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + CLIENT_TIMEOUT_S + 30
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stderr
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return HeyReport.parse(result.stdout, cpu_s)


@dataclass
class Probe:
    at_s: float  # time.monotonic() when it was sent
    latency_s: float
    status: int | str  # HTTP status, or the exception's name


@dataclass
class PingProber:
    """``GET /ping`` on a fresh connection every ``interval_s`` on a thread, as a health checker."""

    url: str
    interval_s: float = 0.5
    timeout_s: float = 5.0
    probes: list[Probe] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping-prober", daemon=True)

    def __enter__(self) -> PingProber:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 1)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                status: int | str = requests.get(self.url, timeout=self.timeout_s).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            self.probes.append(Probe(start, time.monotonic() - start, status))
            due += self.interval_s
            self._stop.wait(max(0.0, due - time.monotonic()))

    def between(self, start_s: float, end_s: float) -> list[Probe]:
        """The probes sent between two ``time.monotonic()`` readings."""
        return [p for p in self.probes if start_s <= p.at_s < end_s]


def latency_summary(probes: list[Probe]) -> dict[str, float]:
    """p50, p99 and max latency in milliseconds."""
    latencies = sorted(p.latency_s * 1000 for p in probes)
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    return {"p50": statistics.median(latencies), "p99": p99, "max": latencies[-1]}
