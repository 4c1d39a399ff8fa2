"""What keeps a long run from silently going wrong: non-finite losses and running out of memory.

`LossGuard` watches every step's loss. By default it records the first non-finite one on the
device, without a host sync per step, and `check()` (called with the progress display and at the
end of each epoch, before any checkpoint) stops the run with the step and the last good
checkpoint in the message. Under `--skip-nonfinite` it must decide per step, so it syncs and
tells the loop to drop that step's update.

`handle_out_of_memory` wraps `train`: an out-of-memory error becomes a one-line message with
the largest batch size that fits, found by trial forward/backward passes on a fresh model; with
`--auto-batch-size` the same search runs before training and the run uses what it finds.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from resnets.errors import ResNetsError
from resnets.runtime.device import resolve_device
from resnets.train import ranks
from resnets.train.build import build_model, load_training_data
from resnets.train.checkpoint import describe_checkpoint
from resnets.train.config import TrainConfig
from resnets.train.device import autocast, speed_up, to_input, use_channels_last


class NonFiniteLossError(ResNetsError):
    """The loss became NaN or infinite; the run stopped before saving anything from that point."""


class LossGuard:
    def __init__(self, skip: bool, checkpoint_dir: Path) -> None:
        self.skip = skip
        self.checkpoint_dir = checkpoint_dir
        self.first_step: torch.Tensor | None = None  # 0 until a non-finite loss is seen
        self.first_value: torch.Tensor | None = None

    def admit(self, loss: torch.Tensor, step: int, skipped: list[int], all_ranks: bool = False) -> bool:
        """False when this step must be skipped (its number is appended to `skipped`). With
        `all_ranks`, every process skips when any one saw a non-finite loss (their gradients
        are averaged, so they must agree on which steps happen)."""
        loss = loss.detach()
        finite = torch.isfinite(loss)
        if self.skip:
            if all_ranks:
                finite = ranks.reduce_sums((~finite).double().reshape(1))[0] == 0
            if bool(finite):
                return True
            if not skipped or skipped[-1] != step:
                skipped.append(step)
            return False
        if self.first_step is None:
            self.first_step = torch.zeros((), dtype=torch.float64, device=loss.device)
            self.first_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        keep = finite | (self.first_step > 0)
        self.first_step = torch.where(keep, self.first_step, float(step))
        self.first_value = torch.where(keep, self.first_value, loss.float())
        return True

    def check(self) -> None:
        """Raise NonFiniteLossError if any step so far had a non-finite loss."""
        if self.first_step is None or (step := int(self.first_step.item())) == 0:
            return
        value = float(self.first_value.item())  # type: ignore[union-attr]
        last = describe_checkpoint(self.checkpoint_dir)
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


def largest_batch_size(config: TrainConfig) -> int:
    """The largest training batch <= config.batch_size whose forward and backward fit in memory.

    Tried on a fresh model (same architecture, device and precision; without torch.compile, and
    without optimizer state, so leave a little headroom), with random inputs of the data's shape.
    """

    device = resolve_device(config.device)
    found = _search_on_fresh_model(config, device)
    free_memory(device)  # the trial model is gone now
    return found


def _search_on_fresh_model(config: TrainConfig, device: torch.device) -> int:

    data = load_training_data(config)
    model = build_model(config, data)
    forward = speed_up(model, config.replace(compile=False), device)
    channels_last = use_channels_last(config, device)
    amp = autocast(device, config.precision)
    shape = (data.in_channels, data.input_size, data.input_size)
    model.train()

    def fits(batch: int) -> bool:
        try:
            x = to_input(torch.randn(batch, *shape, device=device), channels_last)
            y = torch.randint(0, data.num_classes, (batch,), device=device)
            with amp:
                loss = torch.nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)
            free_memory(device)

    return search_batch_size(fits, config.batch_size)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def handle_out_of_memory(train: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """Wrap `train(config, run_dir, *, resume=..., ...)`: --auto-batch-size, and a one-line error
    naming the largest batch that fits instead of a bare out-of-memory traceback."""

    @functools.wraps(train)
    def wrapper(config: TrainConfig, run_dir: str | Path, *args: Any, **kwargs: Any) -> dict[str, Any]:
        resume = kwargs.get("resume", False)
        if config.auto_batch_size and not resume:
            fits = largest_batch_size(config.validate())
            if fits == 0:
                raise ResNetsError(f"out of memory on {config.device}: not even a batch of 1 fits")
            config = config.replace(batch_size=fits)
        try:
            return train(config, run_dir, *args, **kwargs)
        except torch.OutOfMemoryError:
            pass  # leave the handler first, so the failed attempt's tensors can be freed
        fits = largest_batch_size(config)
        where = f"out of memory at batch size {config.batch_size}"
        if fits == 0:
            raise ResNetsError(f"{where}: not even a batch of 1 fits; try a smaller model or --input-size")
        advice = (
            f"start a new run with --batch-size {fits} (a resumed run keeps its batch size)"
            if resume
            else f"rerun with --batch-size {fits} or --auto-batch-size"
        )
        raise ResNetsError(f"{where}; the largest batch that fits is {fits}: {advice}")

    return wrapper
