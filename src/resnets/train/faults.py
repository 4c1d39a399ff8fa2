"""Fault injection for the reliability tests (tests/reliability), off unless an environment
variable switches it on.

    RESNETS_FAULT_KILL_AT_STEP=k   SIGKILL this process right after optimizer step k; as
                                   RANK:k only on that global rank and only in the first attempt
                                   of a torchrun group, as RANK:k:every in every attempt
    RESNETS_FAULT_KILL_IN_SAVE=1   SIGKILL inside save_checkpoint after the tensor file is on disk
                                   and before the commit (latest.json)
    RESNETS_FAULT_NAN_AT_STEP=k    the loss of step k (counting from 1) becomes NaN, once per process
    RESNETS_FAULT_INF_AT_STEP=k    the same with +inf

The faults are injected at the real call sites, so a test exercises the same code a crash or a
diverging run would; each hook costs one environment lookup when off.
"""

from __future__ import annotations

import os
import signal

import torch

from resnets.train import distributed, ranks

_fired: set[str] = set()


def _step_flag(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def after_step(step: int) -> None:
    """Called after optimizer step `step` (1-based): the kill -9 at a chosen step (and rank)."""
    spec = os.environ.get("RESNETS_FAULT_KILL_AT_STEP")
    if not spec:
        return
    if ":" not in spec:
        if int(spec) == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return

    rank, at, *mode = spec.split(":")
    first_attempt = distributed.restart_count() == 0
    if int(rank) == ranks.rank() and int(at) == step and (mode == ["every"] or first_attempt):
        os.kill(os.getpid(), signal.SIGKILL)


def in_save() -> None:
    """Called between writing a checkpoint's tensor file and committing it."""
    if os.environ.get("RESNETS_FAULT_KILL_IN_SAVE"):
        os.kill(os.getpid(), signal.SIGKILL)


def loss(value: torch.Tensor, step: int) -> torch.Tensor:
    """`value`, or NaN (inf) in its place (still attached to the graph) at the chosen step, once."""
    for kind in ("nan", "inf"):
        if _step_flag(f"RESNETS_FAULT_{kind.upper()}_AT_STEP") == step and kind not in _fired:
            _fired.add(kind)
            return value * float(kind)
    return value


def reset() -> None:
    """Re-arm the once-per-process faults (for tests that train twice in one process)."""
    _fired.clear()
