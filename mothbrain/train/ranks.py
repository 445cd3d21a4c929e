"""Process ranks under `accelerate launch`: this process's rank, the world size, and a flag agreed by all ranks."""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any (outside a distributed run: the flag itself)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
