"""Where this process stands in a distributed run: rank, world size and device from the torchrun environment
(RANK, WORLD_SIZE, LOCAL_RANK), a per-rank generator, rank-0-only writing, sharding and the few collectives
data-parallel training needs. No global RNG and no state beyond torch.distributed's own process group.

One process (no torchrun) is rank 0 of a world of 1: every helper then does the single-process thing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

__all__ = ["DistEnv", "dist_env", "init_distributed", "leave_distributed", "device_for", "rank_generator", "shard",
           "shard_range", "barrier", "all_reduce_mean", "all_reduce_sum", "all_reduce_gradients", "broadcast_object",
           "gather_objects"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """rank in [0, world_size), local_rank on this host; `writer`: the one rank that writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def writer(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def dist_env() -> DistEnv:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or rank 0 of 1 without it."""
    env = DistEnv(_int_env("RANK", 0), _int_env("WORLD_SIZE", 1), _int_env("LOCAL_RANK", 0))
    if not 0 <= env.rank < env.world_size:
        raise ValueError(f"RANK={env.rank} is outside WORLD_SIZE={env.world_size}")
    return env


def init_distributed(env: DistEnv, backend: str = "auto") -> None:
    """Join the process group (gloo on CPU, NCCL when this rank has a CUDA device; `backend` to force one);
    nothing for a world of 1 or when already joined."""
    import torch.distributed as dist

    if not env.distributed or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > env.local_rank else "gloo"
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)


def device_for(env: DistEnv, name: str = "auto") -> torch.device:
    """This rank's device: `name` when not "auto", else cuda:LOCAL_RANK when there is one, else cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available() and torch.cuda.device_count() > env.local_rank:
        return torch.device("cuda", env.local_rank)
    return torch.device("cpu")


def rank_generator(seed: int, env: DistEnv, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for this rank's draws: seeded with `seed` on rank 0 (so a world of 1 draws what a plain run
    draws) and with a different, fixed seed on every other rank."""
    return torch.Generator(device=device).manual_seed(int(seed) + 1_000_003 * env.rank)


def shard(items: Sequence[T], env: DistEnv) -> list[T]:
    """This rank's share of `items`: every world_size-th item from its rank (static, in order)."""
    return list(items[env.rank::env.world_size])


def shard_range(n: int, env: DistEnv) -> tuple[int, int]:
    """[start, stop) of this rank's contiguous block of n items (sizes differ by at most one)."""
    base, extra = divmod(n, env.world_size)
    start = env.rank * base + min(env.rank, extra)
    return start, start + base + (1 if env.rank < extra else 0)


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def barrier() -> None:
    """Wait for every rank (nothing in one process)."""
    d = _dist()
    if d is not None:
        d.barrier()


def leave_distributed() -> None:
    """Wait for every rank, then leave the process group (nothing when none was joined). The barrier keeps one
    rank from tearing down its gloo pairs while another still talks to it, which aborts that rank."""
    d = _dist()
    if d is not None:
        d.barrier()
        d.destroy_process_group()


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (as one flat buffer: one collective)."""
    d = _dist()
    if d is None or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    d.all_reduce(flat)
    i = 0
    for t in tensors:
        t.copy_(flat[i:i + t.numel()].view_as(t))
        i += t.numel()


def all_reduce_gradients(params: list[torch.Tensor], extra: list[torch.Tensor] | None = None) -> None:
    """Sum the parameters' gradients over the ranks (a rank without a gradient for one contributes zeros), and
    the `extra` tensors with them, in one all-reduce (data-parallel training: before the optimizer step)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_sum([p.grad for p in params] + list(extra or []))


def all_reduce_mean(tensors: list[torch.Tensor]) -> None:
    """Average each tensor over the ranks, in place."""
    d = _dist()
    if d is None:
        return
    all_reduce_sum(tensors)
    for t in tensors:
        t.div_(d.get_world_size())


def broadcast_object(obj: T, src: int = 0) -> T:
    """`obj` as rank `src` has it, on every rank (picklable objects)."""
    d = _dist()
    if d is None:
        return obj
    box = [obj]
    d.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order, on every rank."""
    d = _dist()
    if d is None:
        return [obj]
    out: list = [None] * d.get_world_size()
    d.all_gather_object(out, obj)
    return out
