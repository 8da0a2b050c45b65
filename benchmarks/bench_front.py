"""A front for slow clients: ``dogbreed-serve`` alone against nginx in front of it (issue 21).

Run (from the repository root; nginx installed, e.g. ``apt-get install -y nginx``; about 4 minutes
on 2 cores, most of it waiting on deadlines, little CPU but for (5))::

    .venv/bin/python benchmarks/bench_front.py --json /tmp/bench_front.json

It builds the tests' small artifact (ResNet18, 5 classes, image size 64, seeded random weights),
starts ``dogbreed-serve serve`` on 127.0.0.1 with production constants and one worker
(``MODEL_SERVER_WORKERS=1``; the worker's own deadlines: headers within 10 s of their first byte,
a body within max(30 s, Content-Length / 1 MB/s) of its headers), and an nginx of its own on
127.0.0.1 (configuration, logs, pid and temp files in a temp dir) proxying to that same server,
set as a careful user would set it:

- ``worker_processes 1``, ``worker_connections 1024``;
- ``client_header_timeout 10s``, ``client_body_timeout 30s``, ``send_timeout 60s``,
  ``keepalive_timeout 5s`` (the worker's keep-alive);
- ``client_max_body_size 6m`` (the server's payload limit), ``client_body_buffer_size 128k``
  (larger bodies go to a temp file: a 6m buffer would be allocated whole for every announced
  6 MB body);
- ``proxy_request_buffering on`` (the body is read whole before a request goes upstream, so a
  slow body never holds a request thread), HTTP/1.1 with ``keepalive 16`` to the upstream,
  ``proxy_connect_timeout 5s``, ``proxy_send_timeout 60s``, ``proxy_read_timeout 60s``.

Then, against each front (``direct``: the server's port; ``nginx``: nginx's port):

1. slow head: ``POST /invocations`` and ``Host``, then one header byte every 2 s, never finishing:
   seconds from the first byte until the front answers (its status line) or closes; at 40 s the
   client gives up ("still open");
2. slow body, steady trickle: complete headers with ``Content-Length: 6000000``, then one body byte
   every 5 s: seconds from the end of the headers until answered or closed (give up at 60 s);
3. a 6,000,000-byte body short by one byte, then silence: seconds from the last byte sent until
   answered or closed (give up at 60 s);
4. 300 connections each sending a header byte a second (as in 1; a connection the front closes is
   reopened at once, so 300 stay open), for 20 s, while ``GET /ping`` goes out on a fresh
   connection every 0.5 s: probes answered 200 within 2 s, the slowest probe; RSS of the nginx
   processes and of the dogbreed worker before, at the peak (sampled every 0.5 s) and 2 s after;
5. normal traffic: a 160x120 JPEG posted with ``Content-Type: image/jpeg`` to ``/invocations``
   over keep-alive connections (``serve_support.load_test``), at concurrency 1 and 8, in
   ``--rounds`` back-to-back rounds that alternate which front goes first, so that a shared
   machine's drifting load skews neither side: p50/p99 latency and requests/s per front (median
   of the rounds) and the median of the per-round ratios nginx / direct.

Attacks 1-3 run at once (six single connections, one thread each: they cost the fronts nothing
but a socket, and running them side by side keeps the whole under a minute); 4 and 5 run one front
at a time. Everything stops in ``finally``, every wait is bounded.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import select
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image
from serve_support import free_port, load_test

from dogbreed.artifact import ModelSpec, save_artifact
from dogbreed.model import build_model

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita", "Alaskan_malamute"]
HOST = "127.0.0.1"
FRONTS = ("direct", "nginx")
#: A request head that never ends: the drip continues it with "X-A: aaa...".
SLOW_HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\n"
SLOW_HEAD_DRIP = b"X-A: "
ANNOUNCED_BODY = 6_000_000
BODY_HEAD = (
    f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
    f"Content-Length: {ANNOUNCED_BODY}\r\n\r\n"
).encode()
#: Seconds an answer's status line and close are waited for once the front starts answering.
ANSWER_WAIT_S = 2.0
PROBE_OK_S = 2.0

NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    client_header_timeout 10s;
    client_body_timeout 30s;
    send_timeout 60s;
    keepalive_timeout 5s;
    client_max_body_size 6m;
    client_body_buffer_size 128k;

    upstream dogbreed {{
        server {host}:{upstream_port};
        keepalive 16;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://dogbreed;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering on;
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


# --- the fronts ---------------------------------------------------------------------------------


def make_artifact(model_dir: Path, image_size: int) -> None:
    """The tests' artifact (tests/serve/conftest.py ``model_dir``): seeded, 5 classes."""
    torch.manual_seed(1234)
    model = build_model(len(CLASS_NAMES))
    for module in model.modules():  # distinct, image-dependent outputs, as the tests' model
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    spec = ModelSpec(CLASS_NAMES, image_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    save_artifact(model_dir, model, spec)


def make_jpeg(width: int = 160, height: int = 120, seed: int = 0) -> bytes:
    """A photo-sized-for-a-thumbnail JPEG: gradients plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = rng.uniform(40, 200, 3) + rng.uniform(-80, 80, 3) * x[..., None]
    pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def ping_status(port: int, timeout_s: float = 2.0) -> int | None:
    """GET /ping on a fresh connection: the status, or None when it failed or timed out."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        conn.request("GET", "/ping")
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ping(port: int, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Until GET /ping answers 200 on ``port``; the process must stay up meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        if ping_status(port) == 200:
            return
        time.sleep(0.2)
    raise TimeoutError(f"/ping not 200 on {port} after {timeout_s} s:\n{log.read_text()[-3000:]}")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``processes`` so far."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    """``sig``, then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Server:
    """``dogbreed-serve serve`` on 127.0.0.1:``port``, one worker, production constants."""

    def __init__(self, model_dir: Path, port: int, log_path: Path) -> None:
        env = {
            **os.environ,
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_MODEL_DIR": str(model_dir),
            "MODEL_SERVER_WORKERS": "1",
        }
        self.port = port
        self.log_path = log_path
        serve = Path(sys.executable).with_name("dogbreed-serve")
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(serve), "serve", "--host", HOST], env=env, stdout=log, stderr=log
            )

    def wait_ready(self, timeout_s: float = 120) -> None:
        wait_ping(self.port, self.process, self.log_path, timeout_s)

    def worker_rss(self) -> int:
        """Bytes resident in the worker(s): the master's children."""
        return sum(p.memory_info().rss for p in psutil.Process(self.process.pid).children())

    def cpu_seconds(self) -> float:
        """CPU seconds of the master and its worker(s) so far."""
        master = psutil.Process(self.process.pid)
        return cpu_seconds([master, *master.children()])

    def layout(self) -> str:
        found = re.search(r"\d+ cpu worker\(s\) x \d+ threads[^\n]*", self.log_path.read_text())
        return found[0] if found else "?"

    def stop(self) -> None:
        stop_process(self.process, signal.SIGTERM, 40)


class Nginx:
    """An nginx of its own under ``prefix`` on 127.0.0.1:``port``, proxying to ``upstream_port``."""

    def __init__(self, binary: str, prefix: Path, port: int, upstream_port: int) -> None:
        prefix.mkdir(mode=0o755)
        self.port = port
        self.prefix = prefix
        self.conf = NGINX_CONF.format(
            prefix=prefix, host=HOST, port=port, upstream_port=upstream_port
        )
        conf_path = prefix / "nginx.conf"
        conf_path.write_text(self.conf)
        self.log_path = prefix / "error.log"
        command = [binary, "-c", str(conf_path), "-p", str(prefix), "-e", str(self.log_path)]
        with (prefix / "stdout.log").open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout_s: float = 30) -> None:
        wait_ping(self.port, self.process, self.log_path, timeout_s)

    def rss(self) -> int:
        """Bytes resident in the master and its worker."""
        master = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [master, *master.children()])

    def cpu_seconds(self) -> float:
        master = psutil.Process(self.process.pid)
        return cpu_seconds([master, *master.children()])

    def stop(self) -> None:
        try:
            workers = psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            workers = []
        stop_process(self.process, signal.SIGQUIT, 10)  # graceful: workers finish, then exit
        for worker in workers:  # a killed master leaves its worker running
            if worker.is_running():
                worker.kill()


def nginx_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


# --- attacks on one connection ------------------------------------------------------------------


@dataclass
class Outcome:
    """What a front did with one hostile connection."""

    answer: str  # the status line it sent, "" for none
    seconds: float | None  # until it answered or closed; None: still open when the client gave up
    closed: bool  # it closed (or reset) the connection
    drip_bytes: int  # bytes trickled before that

    def describe(self, give_up_s: float) -> str:
        if self.seconds is None:
            return f"still open at {give_up_s:.0f} s"
        what = self.answer.removeprefix("HTTP/1.1 ") if self.answer else "closed, no answer"
        if self.answer and not self.closed:
            what += ", left open"
        return f"{what} at {self.seconds:.1f} s"


def answer_of(sock: socket.socket, since: float, drip_bytes: int) -> Outcome:
    """The front started answering (or closed): its status line and whether it closes."""
    seconds = time.monotonic() - since
    data, closed = b"", False
    sock.settimeout(ANSWER_WAIT_S)
    try:
        while chunk := sock.recv(65536):
            data += chunk
        closed = True
    except TimeoutError:
        pass
    except OSError:  # reset
        closed = True
    status_line = data.split(b"\r\n", 1)[0].decode("latin-1") if data else ""
    return Outcome(status_line, seconds, closed, drip_bytes)


def drip_byte(lead: bytes, fill: bytes, index: int) -> bytes:
    return lead[index : index + 1] if index < len(lead) else fill


def trickle(
    port: int, opening: bytes, lead: bytes, fill: bytes, every_s: float, give_up_s: float
) -> Outcome:
    """Send ``opening``, then one byte (``lead``, then ``fill`` forever) every ``every_s``, until
    the front answers or closes, or ``give_up_s`` after the opening was sent."""
    sock = socket.create_connection((HOST, port), timeout=10)
    try:
        sock.sendall(opening)
        since = time.monotonic()
        next_drip, dripped = since + every_s, 0
        while (now := time.monotonic()) < since + give_up_s:
            wait = max(0.0, min(next_drip, since + give_up_s) - now)
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                return answer_of(sock, since, dripped)
            if time.monotonic() >= next_drip:
                try:
                    sock.send(drip_byte(lead, fill, dripped))
                except OSError:  # the front closed: the next select sees it, or this is it
                    return Outcome("", time.monotonic() - since, True, dripped)
                dripped += 1
                next_drip += every_s
        return Outcome("", None, False, dripped)
    finally:
        sock.close()


def slow_head(port: int, args: argparse.Namespace) -> Outcome:
    return trickle(port, SLOW_HEAD, SLOW_HEAD_DRIP, b"a", args.head_every, args.head_give_up)


def slow_body(port: int, args: argparse.Namespace) -> Outcome:
    return trickle(port, BODY_HEAD, b"", b"\xff", args.body_every, args.body_give_up)


def short_body(port: int, args: argparse.Namespace) -> Outcome:
    opening = BODY_HEAD + b"\xff" * (ANNOUNCED_BODY - 1)
    return trickle(port, opening, b"", b"", float("inf"), args.body_give_up)


# --- many slow heads at once --------------------------------------------------------------------


class SlowHeadCrowd:
    """``count`` connections each sending one more header byte every ``every_s``; one the front
    closes (or answers) is reopened at once, so that ``count`` stay open."""

    def __init__(self, port: int, count: int, every_s: float) -> None:
        self.port = port
        self.every_s = every_s
        self.selector = selectors.DefaultSelector()
        self.dripped: dict[socket.socket, int] = {}
        self.answers: Counter[str] = Counter()
        self.closed_silently = 0
        self.open_failures = 0
        for _ in range(count):
            self.open_one()

    def open_one(self) -> None:
        try:
            sock = socket.create_connection((HOST, self.port), timeout=2)
            sock.sendall(SLOW_HEAD)
        except OSError:
            self.open_failures += 1
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.dripped[sock] = 0

    def drop(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        del self.dripped[sock]
        sock.close()

    def on_readable(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if data:
            self.answers[data.split(b"\r\n", 1)[0].decode("latin-1")] += 1
        else:
            self.closed_silently += 1
        self.drop(sock)
        self.open_one()

    def drip(self) -> None:
        for sock in list(self.dripped):
            try:
                sock.send(drip_byte(SLOW_HEAD_DRIP, b"a", self.dripped[sock]))
                self.dripped[sock] += 1
            except BlockingIOError:
                pass
            except OSError:
                self.closed_silently += 1
                self.drop(sock)
                self.open_one()

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        next_drip = time.monotonic() + self.every_s
        while (now := time.monotonic()) < end:
            for key, _ in self.selector.select(max(0.0, min(next_drip, end) - now)):
                self.on_readable(key.fileobj)  # type: ignore[arg-type]
            if time.monotonic() >= next_drip:
                self.drip()
                next_drip += self.every_s

    def close(self) -> None:
        for sock in list(self.dripped):
            self.drop(sock)
        self.selector.close()


def probe_pings(
    port: int, seconds: float, every_s: float, results: list[tuple[float, float | None]]
) -> None:
    """GET /ping on a fresh connection every ``every_s``: (when it went out, seconds into the
    attack; seconds to a 200, None when it was not)."""
    began = time.monotonic()
    next_at = began
    while next_at < began + seconds:
        time.sleep(max(0.0, next_at - time.monotonic()))
        start = time.monotonic()
        status = ping_status(port, timeout_s=10)
        results.append((start - began, time.monotonic() - start if status == 200 else None))
        next_at += every_s


def sample_rss(
    sources: dict[str, Callable[[], int]], stop: threading.Event, peaks: dict[str, int]
) -> None:
    while not stop.wait(0.5):
        for name, rss in sources.items():
            peaks[name] = max(peaks.get(name, 0), rss())


def many_slow_heads(
    port: int, rss_sources: dict[str, Callable[[], int]], args: argparse.Namespace
) -> dict[str, object]:
    """Attack 4 against one front: the probes' figures, the crowd's census, RSS in MiB."""
    before = {name: rss() for name, rss in rss_sources.items()}
    probes: list[tuple[float, float | None]] = []
    peaks: dict[str, int] = dict(before)
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(rss_sources, stop, peaks), daemon=True)
    crowd = SlowHeadCrowd(port, args.crowd, args.crowd_every)
    prober = threading.Thread(
        target=probe_pings, args=(port, args.crowd_seconds, 0.5, probes), daemon=True
    )
    sampler.start()
    prober.start()
    try:
        crowd.run(args.crowd_seconds)
        prober.join(15)
        open_at_end = len(crowd.dripped)
    finally:
        crowd.close()
        stop.set()
        sampler.join(5)
    time.sleep(2)
    after = {name: rss() for name, rss in rss_sources.items()}
    answered = [(at, p) for at, p in probes if p is not None]
    slowest = max(answered, key=lambda probe: probe[1], default=None)
    mib = 1024 * 1024
    return {
        "probes": len(probes),
        "probes_200_within_2s": sum(1 for _, p in answered if p <= PROBE_OK_S),
        "probes_failed": len(probes) - len(answered),
        "slowest_probe_ms": round(1000 * slowest[1], 1) if slowest else None,
        "slowest_probe_at_s": round(slowest[0], 1) if slowest else None,
        "probe_ms_over_100": [[round(at, 1), round(1000 * p)] for at, p in answered if p > 0.1],
        "open_at_end": open_at_end,
        "front_answers": dict(crowd.answers),
        "front_closed_silently": crowd.closed_silently,
        "open_failures": crowd.open_failures,
        "rss_mib": {
            name: {
                "before": round(before[name] / mib, 1),
                "peak": round(peaks[name] / mib, 1),
                "after": round(after[name] / mib, 1),
            }
            for name in rss_sources
        },
    }


# --- normal traffic -----------------------------------------------------------------------------


def traffic_round(
    port: int, jpeg: bytes, concurrency: int, seconds: float, cpu: dict[str, Callable[[], float]]
) -> dict[str, float]:
    """One load test; with the CPU milliseconds per request of each process group in ``cpu``."""
    before = {name: seconds_of() for name, seconds_of in cpu.items()}
    result = load_test(port, [jpeg], concurrency, seconds)
    for name, seconds_of in cpu.items():
        result[f"{name}_cpu_ms_per_request"] = (
            1000 * (seconds_of() - before[name]) / result["requests"]
        )
    return result


def normal_traffic(
    ports: dict[str, int],
    cpu: dict[str, dict[str, Callable[[], float]]],
    jpeg: bytes,
    args: argparse.Namespace,
) -> dict[str, dict[str, object]]:
    """Attack-free cost of the hop: rounds alternating which front goes first."""
    per_round = args.traffic_seconds / args.rounds
    results: dict[str, dict[str, object]] = {}
    for concurrency in (1, 8):
        rounds: dict[str, list[dict[str, float]]] = {front: [] for front in FRONTS}
        for index in range(args.rounds):
            order = FRONTS if index % 2 == 0 else FRONTS[::-1]
            for front in order:
                rounds[front].append(
                    traffic_round(ports[front], jpeg, concurrency, per_round, cpu[front])
                )
            d, n = rounds["direct"][-1], rounds["nginx"][-1]
            print(
                f"  c={concurrency} round {index + 1}: direct {d['rate']:.1f} req/s "
                f"p50 {d['p50_ms']:.1f} ms p99 {d['p99_ms']:.1f} ms | nginx {n['rate']:.1f} req/s "
                f"p50 {n['p50_ms']:.1f} ms p99 {n['p99_ms']:.1f} ms, nginx CPU "
                f"{n['nginx_cpu_ms_per_request']:.2f} ms/request; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        summary: dict[str, object] = {}
        for front in FRONTS:
            keys = [k for k in rounds[front][0] if k != "requests"]
            summary[front] = {
                key: round(statistics.median(r[key] for r in rounds[front]), 3) for key in keys
            } | {
                "requests": int(sum(r["requests"] for r in rounds[front])),
                "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds[front]],
            }
        summary["nginx_over_direct"] = {
            key: round(
                statistics.median(
                    n[key] / d[key] for n, d in zip(rounds["nginx"], rounds["direct"], strict=True)
                ),
                3,
            )
            for key in ("rate", "p50_ms", "p99_ms")
        }
        results[f"c{concurrency}"] = summary
    return results


# --- the run ------------------------------------------------------------------------------------


def single_connection_attacks(
    ports: dict[str, int], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, object]]]:
    """Attacks 1-3 against both fronts at once, one thread per connection."""
    attacks = {
        "slow_head": (slow_head, args.head_give_up),
        "slow_body": (slow_body, args.body_give_up),
        "short_body": (short_body, args.body_give_up),
    }
    with ThreadPoolExecutor(len(attacks) * len(ports)) as pool:
        futures = {
            (name, front): pool.submit(fn, port, args)
            for name, (fn, _) in attacks.items()
            for front, port in ports.items()
        }
        results: dict[str, dict[str, dict[str, object]]] = {name: {} for name in attacks}
        for (name, front), future in futures.items():
            outcome = future.result(timeout=args.body_give_up + 30)
            give_up = attacks[name][1]
            results[name][front] = asdict(outcome) | {"verdict": outcome.describe(give_up)}
    return results


def git(*command: str) -> str:
    result = subprocess.run(
        ["git", *command], cwd=REPO, capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout.strip()


def print_table(result: dict[str, object]) -> None:
    attacks = result["attacks"]
    crowd = result["many_slow_heads"]
    traffic = result["normal_traffic"]
    print(f"\n{'':<44} {'direct':<34} {'nginx':<34}")
    labels = {
        "slow_head": "1. slow head (byte / 2 s)",
        "slow_body": "2. slow body (byte / 5 s, CL 6,000,000)",
        "short_body": "3. body short by 1 byte, then silence",
    }
    for name, label in labels.items():
        row = attacks[name]
        print(f"{label:<44} {row['direct']['verdict']:<34} {row['nginx']['verdict']:<34}")
    cells = {
        front: f"{c['probes_200_within_2s']}/{c['probes']} in 2 s, "
        f"slowest {c['slowest_probe_ms']} ms (+{c['slowest_probe_at_s']} s)"
        for front, c in crowd.items()
    }
    print(f"{'4. 300 slow heads: /ping':<44} {cells['direct']:<34} {cells['nginx']:<34}")
    for front, c in crowd.items():
        for name, rss in c["rss_mib"].items():
            print(
                f"   RSS {name} during attack on {front}: {rss['before']} -> peak {rss['peak']} "
                f"-> {rss['after']} MiB"
            )
        print(
            f"   {front}: answers {c['front_answers']}, closed silently "
            f"{c['front_closed_silently']}, open at end {c['open_at_end']}; probes over 100 ms "
            f"[s into the attack, ms]: {c['probe_ms_over_100']}"
        )
    for key, t in traffic.items():
        for front in FRONTS:
            f = t[front]
            cpu = ", ".join(
                f"{name.removesuffix('_cpu_ms_per_request')} CPU {value:.2f} ms/request"
                for name, value in f.items()
                if name.endswith("_cpu_ms_per_request")
            )
            print(
                f"5. {key} {front:<7} {f['rate']:>7.1f} req/s  p50 {f['p50_ms']:>6.1f} ms  "
                f"p99 {f['p99_ms']:>6.1f} ms  ({cpu})"
            )
        r = t["nginx_over_direct"]
        print(
            f"   {key} nginx / direct: req/s {r['rate']:.3f}, p50 {r['p50_ms']:.3f}, "
            f"p99 {r['p99_ms']:.3f} (median of per-round ratios)"
        )


def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    model_dir = tmp / "model"
    make_artifact(model_dir, args.image_size)
    jpeg = make_jpeg()
    server = Server(model_dir, free_port(), tmp / "server.log")
    nginx: Nginx | None = None
    try:
        server.wait_ready()
        nginx = Nginx(args.nginx, tmp / "nginx", free_port(), server.port)
        nginx.wait_ready()
        ports = {"direct": server.port, "nginx": nginx.port}
        print(f"{server.layout()}; nginx {nginx_version(args.nginx)}; ports {ports}")
        for port in ports.values():
            load_test(port, [jpeg], 2, 1.0)  # warm-up
        print("\nattacks 1-3, both fronts at once ...", flush=True)
        attacks = single_connection_attacks(ports, args)
        crowd = {}
        for front, port in ports.items():
            print(f"attack 4 on {front} ...", flush=True)
            sources = {"dogbreed_worker": server.worker_rss}
            if front == "nginx":
                sources = {"nginx": nginx.rss, **sources}
            crowd[front] = many_slow_heads(port, sources, args)
        print("normal traffic ...", flush=True)
        cpu = {
            "direct": {"dogbreed": server.cpu_seconds},
            "nginx": {"nginx": nginx.cpu_seconds, "dogbreed": server.cpu_seconds},
        }
        traffic = normal_traffic(ports, cpu, jpeg, args)
        nginx_conf = nginx.conf
        layout = server.layout()
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "src_dirty": bool(git("status", "--porcelain", "src")),
        "nginx_version": nginx_version(args.nginx),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "server": layout,
        "jpeg_bytes": len(jpeg),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "attacks": attacks,
        "many_slow_heads": crowd,
        "normal_traffic": traffic,
        "nginx_conf": nginx_conf,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results there")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--head-every", type=float, default=2.0, help="attack 1: s per byte")
    parser.add_argument("--head-give-up", type=float, default=40.0)
    parser.add_argument("--body-every", type=float, default=5.0, help="attack 2: s per byte")
    parser.add_argument("--body-give-up", type=float, default=60.0, help="attacks 2 and 3")
    parser.add_argument("--crowd", type=int, default=300, help="attack 4: connections")
    parser.add_argument("--crowd-every", type=float, default=1.0, help="attack 4: s per byte")
    parser.add_argument("--crowd-seconds", type=float, default=20.0)
    parser.add_argument(
        "--traffic-seconds", type=float, default=15.0, help="(5) per front and concurrency"
    )
    parser.add_argument("--rounds", type=int, default=5, help="(5) alternating rounds")
    args = parser.parse_args(argv)
    if not Path(args.nginx).exists():
        parser.error(f"no nginx at {args.nginx}: apt-get install -y nginx")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-front-") as tmp:
        os.chmod(tmp, 0o711)  # nginx's workers (nobody, when run as root) reach their temp dirs
        result = run(args, Path(tmp))
    result["wall_s"] = round(time.monotonic() - started, 1)
    print_table(result)
    print(f"\nwall time {result['wall_s']} s; commit {result['commit']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
