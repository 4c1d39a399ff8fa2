"""What a run needs, checked once the data is loaded and the model built, before anything is
written: no run directory exists until every check here has passed.

- the global batch splits evenly into per-process micro-batches (`split_batch`);
- the training images are at least as large as the network's total stride (`--input-size`);
- BatchNorm, in training mode, normalises over N x H x W values per channel and cannot do so
  over one: a micro-batch of one image is refused when some BatchNorm that trains sees a 1x1
  map (the last stage of resnet18 at 32 px), naming the smallest batch that works;
- something is left to train after `--freeze`.

Remainder batches never reach BatchNorm either: the training loaders yield full batches only
(data/loaders.py), and a batch that unreadable files left too small is dropped by the step
(step.py, `min_batch`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from resnets.data import ImageData
from resnets.errors import DataError, ResNetsError
from resnets.models.create import create_model
from resnets.train.config import TrainConfig
from resnets.train.freeze import FrozenBatchNorm2d, apply_freeze


def check_trainable(config: TrainConfig, data: ImageData, model: nn.Module, world: int) -> int:
    """The per-process micro-batch of `config` on `world` processes, after checking that `model`
    can train on `data` with it; a one-line ResNetsError naming the flag to change otherwise."""
    check_input_size(config, data, model)
    micro_batch = split_batch(config, world, len(data.train))
    if not any(p.requires_grad for p in model.parameters()):
        raise ResNetsError(f"--freeze {config.freeze} leaves nothing to train")
    smallest = min_micro_batch(config, data, model)
    per_process = min(micro_batch, len(data.train) // world)
    if per_process < smallest:
        raise ResNetsError(micro_batch_error(config, data, world, per_process, smallest))
    return micro_batch


def split_batch(config: TrainConfig, world: int, train_images: int) -> int:
    """The per-process micro-batch: the global `batch_size` over processes and accumulation steps."""
    parts = world * config.accum_steps
    if config.batch_size > train_images:
        raise DataError(
            f"--batch-size {config.batch_size} is larger than the {train_images} training images; "
            f"give at most {train_images}"
        )
    if config.batch_size % parts:
        raise ResNetsError(
            f"--batch-size {config.batch_size} is the global batch; it must divide evenly over "
            f"{world} process(es) x {config.accum_steps} accumulation step(s)"
        )
    return config.batch_size // parts


def check_input_size(config: TrainConfig, data: ImageData, model: nn.Module) -> None:
    """The training images must be at least the network's total stride on each side."""
    least = int(getattr(model, "min_input_size", 1))
    if data.input_size < least:
        raise ResNetsError(
            f"{config.model} downsamples by {least}, so it needs inputs of at least {least}x{least}, "
            f"but {data.name} trains at {data.input_size}x{data.input_size}: pass --input-size {least} "
            "(or more; the images are resampled), or choose a network made for small images "
            "such as resnet20"
        )


def min_micro_batch(config: TrainConfig, data: ImageData, model: nn.Module) -> int:
    """The fewest images per micro-batch that every training BatchNorm can normalise over: 2 when
    one of them sees a 1x1 map at the run's input size, else 1."""
    spec = getattr(model, "spec", None)
    if spec is None:
        return 1
    pixels = smallest_training_bn_map(spec, data.input_size, config.freeze, config.freeze_bn)
    return 1 if pixels is None else math.ceil(2 / pixels)


def smallest_training_bn_map(spec, size: int, freeze: str | None, freeze_bn: bool) -> int | None:
    """H x W of the smallest map a BatchNorm that trains normalises, for (size x size) inputs to
    the network of `spec` with `freeze` parts and `freeze_bn` frozen; None when no BatchNorm
    trains. Measured by one forward pass on the meta device (shapes only: no memory, any size)."""
    twin = create_model(spec, device="meta")
    apply_freeze(twin, freeze, freeze_bn=freeze_bn)
    seen: list[int] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(inputs[0].shape[-2] * inputs[0].shape[-1])

    hooks = [
        m.register_forward_pre_hook(record)
        for m in twin.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, FrozenBatchNorm2d)
    ]
    try:
        with torch.no_grad():
            twin.eval()(torch.empty(1, spec.in_channels, size, size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return min(seen) if seen else None


def micro_batch_error(config: TrainConfig, data: ImageData, world: int, got: int, smallest: int) -> str:
    parts = world * config.accum_steps
    return (
        f"--batch-size {config.batch_size} leaves {got} image(s) per micro-batch ({world} process(es) "
        f"x {config.accum_steps} accumulation step(s)), but {config.model} reaches a 1x1 map at "
        f"{data.input_size}x{data.input_size} inputs and BatchNorm cannot train on a single value per "
        f"channel: the smallest micro-batch is {smallest}, so use --batch-size {smallest * parts} or "
        "more (or a larger --input-size, or --freeze-bn)"
    )
