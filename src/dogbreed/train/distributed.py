"""torch.distributed setup: one process per GPU and per host, launched by torchrun.

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE; without them the job is one
process. NCCL is the backend on GPU, gloo on CPU. Only rank 0 writes artifacts, checkpoints and
metrics. Every collective is bounded by the job's stall timeout: a peer that dies or stalls ends
the job with :class:`PeerError` instead of leaving the others waiting for torch's default
(10 to 30 minutes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


class PeerError(RuntimeError):
    """A collective across ranks failed: a peer process died or stalled."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_size: int = 1  # ranks on this host
    device: torch.device = torch.device("cpu")
    stall_timeout: float = 0.0  # seconds a collective may wait (0: one process, none)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_world(stall_timeout: float) -> World:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if size > 1:
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=stall_timeout),
        )
    return World(rank, size, local_size, device, stall_timeout if size > 1 else 0.0)


def all_reduce_sum(values: list[float], world: World) -> list[float]:
    """Sum a few numbers over all ranks (a no-op in one process)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    try:
        dist.all_reduce(tensor)
    except RuntimeError as exc:  # gloo's and NCCL's DistError included
        raise PeerError(describe_peer_failure(exc, world)) from exc
    return tensor.tolist()


def describe_peer_failure(exc: BaseException, world: World) -> str:
    """A failed collective in words: who waited, for how long at most, and what to check."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"rank {world.rank} of {world.size}: a collective across ranks failed ({first}). A peer"
        f" process died, or stalled for more than stall-timeout ({world.stall_timeout:g} s);"
        " see the first failure of the other ranks in the log (an out-of-memory kill, a lost"
        " instance, a stopped process)."
    )


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. a SIGTERM seen by one)."""
    return all_reduce_sum([float(flag)], world)[0] > 0


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
