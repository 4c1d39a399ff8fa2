"""What keeps a long run from silently going wrong: non-finite losses, and the search for a batch
size that fits in memory.

`LossGuard` watches every micro-batch's loss inside the training step. By default it records the
first non-finite one on the device, in place and without a host sync (so it also works inside a
captured CUDA graph), and `check()` (called with the progress display, before every checkpoint
and at the end of each epoch) stops the run with the step and the last good checkpoint in the
message. Under `--skip-nonfinite` it must decide per step, so it syncs and the step drops that
update.

`search_batch_size` is the search behind the out-of-memory message and `--auto-batch-size`
(memory.py tries the batch sizes).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import torch

from resnets.errors import ResNetsError
from resnets.train import ranks
from resnets.train.checkpoint import describe_checkpoint


class NonFiniteLossError(ResNetsError):
    """The loss became NaN or infinite; the run stopped before saving anything from that point."""


class LossGuard:
    """The non-finite-loss policy of a run: record and stop (default) or skip (`skip`).

    `checkpoint_dir` is where the run keeps its checkpoints, named in the stop message (None: a
    step outside a run, as in `resnets bench`).
    """

    def __init__(self, skip: bool = False, checkpoint_dir: Path | None = None) -> None:
        self.skip = skip
        self.checkpoint_dir = checkpoint_dir
        self.first_step: torch.Tensor | None = None  # 0 until a non-finite loss is seen
        self.first_value: torch.Tensor | None = None

    def admit(self, loss: torch.Tensor, step: int | torch.Tensor, all_ranks: bool = False) -> bool:
        """Whether the update of optimizer step `step` (1-based) may use this `loss`.

        Recording (the default): always True; a non-finite loss is remembered with its step in
        device tensors updated in place (`step` may be a device tensor, as in a CUDA graph).
        Skipping: False for a non-finite loss; with `all_ranks`, every process answers False when
        any one saw one (their gradients are averaged, so they must agree on which steps happen).
        """
        loss = loss.detach()
        finite = torch.isfinite(loss)
        if self.skip:
            if all_ranks:
                finite = ranks.reduce_sums((~finite).double().reshape(1))[0] == 0
            return bool(finite)
        if self.first_step is None or self.first_value is None:
            self.first_step = torch.zeros((), dtype=torch.float64, device=loss.device)
            self.first_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        new = ~finite & (self.first_step == 0)
        self.first_step.copy_(torch.where(new, step, self.first_step))
        self.first_value.copy_(torch.where(new, loss.float(), self.first_value))
        return True

    def check(self) -> None:
        """Raise NonFiniteLossError if any step so far had a non-finite loss (one host sync)."""
        if self.first_step is None or (step := int(self.first_step.item())) == 0:
            return
        value = float(self.first_value.item())  # type: ignore[union-attr]
        last = describe_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        raise NonFiniteLossError(
            f"loss became {value} at step {step}; stopped without saving. Last good checkpoint: "
            + (last if last else "none yet")
            + ". Lower --lr, set --grad-clip, or pass --skip-nonfinite to skip such steps"
        )


# --- out of memory ---------------------------------------------------------------------------


def search_batch_size(fits: Callable[[int], bool], start: int) -> int:
    """The largest b <= start with fits(b), or 0: halve until one fits, then bisect upwards."""
    if fits(start):
        return start
    high, low = start, start // 2
    while low >= 1 and not fits(low):
        high, low = low, low // 2
    if low == 0:
        return 0
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
