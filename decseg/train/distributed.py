"""DDP support: read torchrun's environment, pick the device and backend, agree across ranks.

A single process (no RANK/WORLD_SIZE in the environment) needs no torchrun and no process group.
Under ``torchrun --nproc_per_node=N`` each process trains on its own shard with the per-process
batch sizes from the config (global batch = N x per-process), NCCL on GPUs, gloo on CPU.

Faults. A rank that dies (SIGKILL, OOM kill, crash) closes its connections: gloo fails the
survivors' next collective at once and torchrun's agent stops the rest. A rank that hangs (alive
but stuck: a stalled file system, a deadlock, a stopped process) is only noticed through the
collective timeout, which is ``DECSEG_DDP_TIMEOUT`` seconds (default 600, as NCCL's own default;
gloo's would be 30 minutes). It bounds how long one rank may work alone while the others wait in
a collective, so it must exceed rank 0's validation and checkpoint writes (the paper model's
validation on CPU, fp32: about 2 minutes for 72 images). A failed collective in the helpers
below raises ``CollectiveError`` (a ``DecsegError``: one line from the CLI) that says so.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from decseg.errors import ConfigError, DecsegError

TIMEOUT_ENV = "DECSEG_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class CollectiveError(DecsegError):
    """A collective failed: another process of the run died, hung past the timeout, or left."""


def collective_timeout() -> timedelta:
    """The process group's timeout: ``$DECSEG_DDP_TIMEOUT`` seconds, else 600 s."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0 (default "
                          f"{DEFAULT_TIMEOUT_S:.0f}), the longest one rank may wait for the others")
    return timedelta(seconds=seconds)


@contextlib.contextmanager
def collective_errors(what: str) -> Iterator[None]:
    """Turn a failed collective (a dead or hung peer) into a one-line ``CollectiveError``.

    Wrap calls that communicate (the helpers below do; so can a DDP forward and backward).
    """
    try:
        yield
    except CollectiveError:
        raise
    except RuntimeError as e:  # gloo/NCCL failures: RuntimeError or its subclass DistError
        if not (dist.is_available() and dist.is_initialized()):
            raise
        rank = dist.get_rank()
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        timeout = collective_timeout().total_seconds()
        raise CollectiveError(
            f"rank {rank}: {what} failed, so another process of this run has died or hung "
            f"(torchrun's report names it): {first[:400]}. The last checkpoint (RUN/checkpoints/"
            f"last.pt) is intact; continue with the same torchrun command and --resume. A rank "
            f"that waits longer than {TIMEOUT_ENV}={timeout:g} s gives up: raise it if rank 0's "
            f"validation legitimately takes longer") from e


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Rank/world size from torchrun's environment variables (defaults: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(os.environ.get("RANK", "0")), world_size=world,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": collective_timeout()}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_across_ranks(flags: list[bool], device: torch.device) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks (so every rank takes the same branch)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(flags)
    t = torch.tensor([float(f) for f in flags], device=device)
    with collective_errors("agreeing on the step's flags (all_reduce)"):
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def mean_across_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged scalars over ranks."""
    if not (dist.is_available() and dist.is_initialized()) or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], device=device, dtype=torch.float64)
    with collective_errors("averaging the logged losses (all_reduce)"):
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    with collective_errors("gathering the ranks' resume state (all_gather_object)"):
        dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        with collective_errors("waiting for the other ranks (barrier)"):
            dist.barrier()


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """Wrap the method module (network + generators in one module, one forward per step).

    Switched-off parts are never built (no decoder B without model.sc, no generators without
    train.cc), so every parameter takes part in every loss and ``find_unused_parameters``
    (an extra graph traversal per step) stays off.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=False)
