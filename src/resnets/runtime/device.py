"""Where and at what precision a network runs: the device, autocast and the precision names.

Every command that runs a network resolves its `--device` and `--precision` here, so 'auto',
an unavailable CUDA and an unknown precision are answered the same way everywhere.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from resnets.errors import ResNetsError

# The precisions we run at: fp32, or autocast to bf16 / fp16 (fp16 training adds a GradScaler).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device we can run on now ('auto': CUDA if there is one).

    Raises ResNetsError (one line) for an unknown name or a CUDA device on a machine without CUDA.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ResNetsError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ResNetsError("device 'cuda' requested but CUDA is not available here; use --device cpu")
    return dev


def check_precision(precision: str) -> None:
    """Raise ResNetsError unless `precision` is one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ResNetsError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """Autocast for `precision` on `device`'s type, or a no-op for fp32.

    The weight-cast cache is off: a ResNet uses each weight once per forward, so the cache saves
    nothing, and cached casts would dangle across CUDA-graph replays.
    """
    check_precision(precision)
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype, cache_enabled=False)
