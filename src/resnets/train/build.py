"""What a run is made of, built from its config: a typed `Run` (data, model, DDP wrapper, the
training step with its optimizer, scaler, EMA and mixing, loaders, schedule, device)."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.data import ImageData, load_data, make_loader
from resnets.data.datasets import split_indices, subset
from resnets.data.registry import with_normalization
from resnets.errors import ResNetsError
from resnets.models.create import create_model, resolve_spec
from resnets.models.zoo import default_input_size
from resnets.train import distributed, ranks
from resnets.train.config import TrainConfig
from resnets.train.device import autocast, use_channels_last
from resnets.train.guards import LossGuard
from resnets.train.schedule import Schedule
from resnets.train.step import TrainStep, build_step
from resnets.weights.load import load_weights


@dataclass
class Run:
    """Everything one process trains with, built once by `build_run` and read by the loop.

    `model` holds the parameters and the state_dict names (what the optimizer, the EMA and the
    saved files see); `ddp` is `model` or, with several processes, DistributedDataParallel around
    it; the step calls `step.forward`, resnets.optimize's fast path around `ddp`.
    """

    config: TrainConfig
    run_dir: Path
    device: torch.device
    world_size: int
    data: ImageData
    model: nn.Module
    ddp: nn.Module
    step: TrainStep
    train_loader: Any
    val_loader: Any
    micro_batch: int  # images per process per micro-step
    steps_per_epoch: int  # optimizer steps per epoch, the same on any world size
    epochs: int
    schedule: Schedule
    amp: AbstractContextManager  # autocast at the run's precision (evaluation; the step has its own)
    channels_last: bool

    @property
    def forward(self) -> nn.Module:
        return self.step.forward

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.step.optimizer

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.step.scaler

    @property
    def ema(self) -> torch.optim.swa_utils.AveragedModel | None:
        return self.step.ema

    @property
    def guard(self) -> LossGuard:
        return self.step.guard

    @property
    def eval_model(self) -> nn.Module:
        """What is evaluated and saved: the EMA weights when there are any, else the model."""
        return self.step.ema.module if self.step.ema is not None else self.model

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoint"

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return ranks.is_main()


def build_run(config: TrainConfig, run_dir: Path, device: torch.device) -> Run:
    """Load the data, build the model, wrap it for DDP, build the step, the loaders and the schedule.

    Raises ResNetsError (DataError, WeightsError, ...) for data, weights or settings that cannot
    make a run, before any training step.
    """
    world = ranks.world_size()
    data = load_training_data(config)
    micro_batch = split_batch(config, world, len(data.train))
    model = build_model(config, data)
    channels_last = use_channels_last(config, device)
    ddp = distributed.wrap(model, device, channels_last=channels_last, sync_bn=config.sync_bn)
    step = build_step(
        config,
        model,
        device,
        num_classes=data.num_classes,
        in_memory=data.train.in_memory,
        world_size=world,
        ddp=ddp,
        checkpoint_dir=run_dir / "checkpoint",
    )
    train_loader, val_loader = build_loaders(config, data, device, micro_batch)
    steps_per_epoch = max(1, len(data.train) // config.batch_size)  # the same on any world size
    schedule = Schedule.from_config(config, steps_per_epoch)
    return Run(
        config=config,
        run_dir=run_dir,
        device=device,
        world_size=world,
        data=data,
        model=model,
        ddp=ddp,
        step=step,
        train_loader=train_loader,
        val_loader=val_loader,
        micro_batch=micro_batch,
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(schedule.total_steps / steps_per_epoch),
        schedule=schedule,
        amp=autocast(device, config.precision),
        channels_last=channels_last,
    )


def load_training_data(config: TrainConfig) -> ImageData:
    """The data `config` trains on, with its held-out split, its subsets and its normalisation
    (from the training images it keeps): what `train` loads, and what `resnets eval RUN_DIR`
    loads again to evaluate on the run's own validation images (pass
    `config.replace(data_dir=..., download=False)` to read it from elsewhere)."""
    data = load_data(
        config.data,
        input_size=config.input_size,
        val_split=config.val_split,
        split_seed=config.split_seed,
        data_dir=config.data_dir,
        download=config.download,
        synthetic_count=config.synthetic_count,
        synthetic_classes=config.synthetic_classes,
        default_size=default_input_size(resolve_spec(config.model)),
    )
    for name, count in (("train", config.train_subset), ("val", config.val_subset)):
        split = getattr(data, name)
        if count is not None and count < len(split):  # a fixed stratified share of each class
            setattr(data, name, subset(split, split_indices(split.labels, count, config.split_seed)[1]))
    if not data.train.in_memory and config.augment == "pad-crop":
        # pad-crop trains on the whole image at input_size (the CIFAR recipe): evaluate it whole
        # too, not zoomed by the 0.875 centre crop of ImageNet-style evaluation.
        data.resize_size = None
    return with_normalization(data, config.normalize)


def build_model(config: TrainConfig, data: ImageData) -> nn.Module:
    """The network of `config` sized for `data` (its classes and input channels), starting from
    `config.weights` when fine-tuning."""
    model = create_model(
        config.model, num_classes=data.num_classes, in_channels=data.in_channels, **config.model_overrides()
    )
    if config.weights:  # fine-tuning: start from these weights (a resumed run then restores its own)
        load_weights(model, config.weights, reset_head=config.reset_head)
    return model


def split_batch(config: TrainConfig, world: int, train_images: int) -> int:
    """The per-process micro-batch: the global `batch_size` over processes and accumulation steps."""
    parts = world * config.accum_steps
    if config.batch_size % parts:
        raise ResNetsError(
            f"--batch-size {config.batch_size} is the global batch; it must divide evenly over "
            f"{world} process(es) x {config.accum_steps} accumulation step(s)"
        )
    if parts > 1 and train_images < config.batch_size:
        raise ResNetsError(
            f"--batch-size {config.batch_size} exceeds the {train_images} training images; "
            "lower it to train with several processes or accumulation steps"
        )
    return config.batch_size // parts


def build_loaders(config: TrainConfig, data: ImageData, device: torch.device, micro_batch: int):
    """This rank's training batches (micro-batches, augmented) and validation batches (its shard)."""
    augment = config.augment
    if augment == "auto":
        augment = "pad-crop" if data.train.in_memory else "resized-crop"
    common = dict(
        seed=config.seed,
        device=device,
        workers=config.workers,
        rank=ranks.rank(),
        world_size=ranks.world_size(),
        decode_on_device=config.decode_on_device,
    )
    train_loader = make_loader(
        data,
        "train",
        batch_size=micro_batch,
        augment=augment,
        pad=config.pad,
        flip=config.flip,
        lighting=config.lighting,
        **common,
    )
    val_loader = make_loader(data, "val", batch_size=micro_batch * config.accum_steps, **common)
    return train_loader, val_loader
