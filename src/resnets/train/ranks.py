"""Where data parallelism would enter: which process this is, and summing metrics over processes.

Everything rank-aware in training goes through here: only the main process writes files and
prints, and per-epoch sums are reduced in `reduce_sums`. Without torch.distributed initialised
(a single process) this is rank 0 of 1 and reducing is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    return rank() == 0


def reduce_sums(sums: torch.Tensor) -> torch.Tensor:
    """Sum a tensor of per-process sums (loss totals, correct counts, image counts) over processes."""
    if _active():
        sums = sums.clone()
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    return sums
