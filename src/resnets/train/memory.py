"""Out of memory: find the largest training batch that fits, and say so instead of a traceback.

`with_batch_that_fits` wraps one training attempt: with `--auto-batch-size` the search runs before
training and the run uses what it finds; an out-of-memory error during training becomes a one-line
message naming the largest batch that fits. The search tries forward and backward passes on a fresh
model of the same architecture, device and precision (guards.search_batch_size).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from resnets.errors import ResNetsError
from resnets.runtime.device import resolve_device
from resnets.train.build import build_model, load_training_data
from resnets.train.config import TrainConfig
from resnets.train.device import autocast, speed_up, to_input, use_channels_last
from resnets.train.guards import free_memory, search_batch_size
from resnets.train.preflight import min_micro_batch


def with_batch_that_fits(
    attempt: Callable[[TrainConfig], dict[str, Any]], config: TrainConfig, *, resume: bool
) -> dict[str, Any]:
    """`attempt(config)`, with --auto-batch-size applied first (not on a resume, which keeps its
    batch size) and an out-of-memory error turned into a ResNetsError naming the batch that fits."""
    if config.auto_batch_size and not resume:
        fits = largest_batch_size(config)
        if fits == 0:
            raise ResNetsError(f"out of memory on {config.device}: not even a batch of 1 fits")
        config = config.replace(batch_size=fits)
    try:
        return attempt(config)
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
    least = min_micro_batch(config, data, model)  # below it BatchNorm cannot train at all
    forward = speed_up(model, config.replace(compile=False), device)
    channels_last = use_channels_last(config, device)
    amp = autocast(device, config.precision)
    shape = (data.in_channels, data.input_size, data.input_size)
    model.train()

    def fits(batch: int) -> bool:
        if batch < least:
            return False
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
