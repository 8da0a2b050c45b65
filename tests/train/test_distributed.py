"""DDP on CPU with gloo: two ranks on one host, and two 'hosts' on this machine."""

from __future__ import annotations

import re
import socket

HP = {"epochs": "2", "batch-size": "8", "workers": "0"}
DIGEST = re.compile(r"\[rank (\d)\] dogbreed.train: rank \d final weights sha256=([0-9a-f]+)")


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_two_processes_on_one_host_end_with_identical_weights(make_job) -> None:
    job = make_job(HP)
    result = job.run(DOGBREED_PROCESSES_PER_HOST="2")
    out = result.stdout
    assert result.returncode == 0, out[-4000:]
    assert "dogbreed.train.ranks --nproc-per-node=2 --standalone -m dogbreed.train" in out
    digests = dict(DIGEST.findall(out))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], digests
    # Only rank 0 prints metrics and writes artifacts: one line per epoch plus the test line.
    assert sum(line.startswith("[metrics]") for line in out.splitlines()) == 3
    assert (job.model_dir / "model.pt").exists() and (job.checkpoints / "checkpoint.pt").exists()


def test_two_hosts_rendezvous_and_only_the_first_writes(make_job) -> None:
    # Two /opt/ml trees, as two instances would have; "localhost" sorts first and is the master.
    hosts = ("localhost", "worker-2")
    first = make_job(HP, hosts=hosts, current_host="localhost")
    second = make_job(HP, hosts=hosts, current_host="worker-2")
    port = _free_port()
    procs = [job.popen(DOGBREED_MASTER_PORT=port) for job in (first, second)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-4000:]
    assert "--nnodes=2 --node-rank=0 --master-addr=localhost" in outs[0]
    assert "--nnodes=2 --node-rank=1 --master-addr=localhost" in outs[1]
    digests = dict(DIGEST.findall(outs[0]) + DIGEST.findall(outs[1]))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], digests
    assert (first.model_dir / "model.pt").exists()
    assert not second.model_dir.exists() and not second.checkpoints.exists()


def test_toolkit_runs_plain_python_for_one_process(make_job) -> None:
    job = make_job({**HP, "epochs": "1"})
    result = job.run()
    assert result.returncode == 0
    assert "-m dogbreed.train --batch-size 8" in result.stdout
    assert "dogbreed.train.ranks" not in result.stdout
