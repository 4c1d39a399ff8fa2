"""What a run is made of, built from its config: a typed `Run` (data, model, DDP wrapper, the
training step with its optimizer, scaler, EMA and mixing, loaders, schedule, device)."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.data import ImageData, load_data, make_loader
from resnets.data.datasets import split_indices, subset
from resnets.data.decode import decode_in_memory, default_budget, parse_bytes, should_decode
from resnets.data.registry import with_normalization
from resnets.data.split import Earlier, SplitRecord
from resnets.models.create import create_model, resolve_spec
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import default_input_size
from resnets.train import distributed, ranks
from resnets.train.config import TrainConfig
from resnets.train.device import autocast, use_channels_last
from resnets.train.freeze import apply_freeze, describe_freeze
from resnets.train.guards import LossGuard
from resnets.train.preflight import check_trainable, min_micro_batch
from resnets.train.schedule import Schedule
from resnets.train.step import TrainStep, build_step
from resnets.weights.load import load_weights, read_meta


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
    notes: list[str] = field(default_factory=list)  # one-line facts the console shows at the start

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
    """Load the data, build the model, check that they can train together (preflight.py), wrap
    the model for DDP, build the step, the loaders and the schedule.

    Raises ResNetsError (DataError, WeightsError, ...) for data, weights or settings that cannot
    make a run, before anything is written.
    """
    world = ranks.world_size()
    config, note = with_the_weights_model(config)
    data = in_memory_if_it_fits(config, load_training_data(config, run_dir), device)
    if note:
        data.messages.insert(0, note)
    notes: list[str] = list(data.messages)  # a class too small to split, a folder that changed
    model = build_model(config, data, notes)
    micro_batch = check_trainable(config, data, model, world)
    min_batch = 1 if data.train.in_memory else min_micro_batch(config, data, model)
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
        min_batch=min_batch,
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
        notes=notes,
    )


def load_training_data(config: TrainConfig, run_dir: Path | None = None) -> ImageData:
    """The data `config` trains on, with its held-out split, its subsets and its normalisation
    (from the training images it keeps): what `train` loads, and what `resnets eval RUN_DIR`
    loads again to evaluate on the run's own validation images (pass
    `config.replace(data_dir=..., download=False)` to read it from elsewhere).

    For a run directory that holds a run (`run_dir`: a resume, a restart, an evaluation), the
    split is the one recorded in its split.json, not derived again; data that changed since is
    refused unless `config.accept_changed_data`. A run from before splits were recorded gets its
    split derived as that version did."""
    earlier = None
    if run_dir is not None and (run_dir / "config.json").is_file():  # a run that exists already
        earlier = Earlier(SplitRecord.read(run_dir), accept_changed=config.accept_changed_data)
    data = load_data(
        config.data,
        input_size=config.input_size,
        val_split=config.val_split,
        split_seed=config.split_seed,
        data_dir=config.data_dir,
        download=config.download,
        synthetic_count=config.synthetic_count,
        synthetic_classes=config.synthetic_classes,
        default_size=default_input_size(weights_spec(config) or resolve_spec(config.model)),
        earlier=earlier,
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


def in_memory_if_it_fits(config: TrainConfig, data: ImageData, device: torch.device) -> ImageData:
    """`data` decoded into memory (data/decode.py) when --decode-in-memory says so and it fits
    --memory-budget, else as it is; a folder of small images that does not fit says why in
    `messages`. Decoded data is normalised again from all its training images (per channel, or
    the per-pixel mean image of every one of them instead of a sample's)."""
    budget = parse_bytes(config.memory_budget) if config.memory_budget else default_budget(device)
    decode, why_not = should_decode(data, config.decode_in_memory, config.augment, budget)
    if decode:
        decoded = decode_in_memory(data, workers=config.workers, progress=ranks.is_main(), budget=budget)
        if data.mean_image is not None:
            decoded.mean_image = None
            decoded = with_normalization(decoded, config.normalize)
        return decoded
    if why_not:
        data.messages.append(f"images read from files every epoch: {why_not}")
    return data


def weights_spec(config: TrainConfig) -> ResNetSpec | None:
    """The architecture `config.weights` records (one of our files), or None."""
    if not config.weights:
        return None
    meta = read_meta(config.weights)
    return ResNetSpec.from_dict(meta.spec) if meta.spec is not None else None


def with_the_weights_model(config: TrainConfig) -> tuple[TrainConfig, str | None]:
    """`config` naming the network its --weights file holds (our file's model, a trainer
    checkpoint's args.model), so the run builds and records that network and not the recipe's
    default; with a one-line note when that differs from `config.model`."""
    if not config.weights:
        return config, None
    meta = read_meta(config.weights)
    name = meta.model if meta.spec is not None else meta.extra.get("names_model")
    if name is None or name == config.model:
        return config, None
    if meta.spec is not None:
        same = resolve_spec(config.model).replace(num_classes=1, in_channels=1) == ResNetSpec.from_dict(
            meta.spec
        ).replace(num_classes=1, in_channels=1)
        if same:
            return config, None
    return config.replace(
        model=name
    ), f"--weights {config.weights} holds a {name}: training that (not {config.model})"


def build_model(config: TrainConfig, data: ImageData, notes: list[str] | None = None) -> nn.Module:
    """The network of `config` sized for `data` (its classes and input channels), starting from
    `config.weights` when fine-tuning (the architecture that file records, when it does), with the
    parts `--freeze`/`--freeze-bn` name frozen (freeze.py). What the console should say about it
    (an adapted stem, what is frozen) is added to `notes`."""
    arch: str | ResNetSpec = weights_spec(config) or config.model
    model = create_model(
        arch, num_classes=data.num_classes, in_channels=data.in_channels, **config.model_overrides()
    )
    said = notes if notes is not None else []
    if config.weights:  # fine-tuning: start from these weights (a resumed run then restores its own)
        meta = load_weights(model, config.weights, reset_head=config.reset_head)
        if "adapted" in meta.extra:
            said.append(f"--weights {config.weights}: {meta.extra['adapted']}")
    frozen = apply_freeze(model, config.freeze, freeze_bn=config.freeze_bn)
    line = describe_freeze(model, frozen, config.freeze_bn, config.lr_backbone)
    if line:
        said.append(line)
    return model


def resolve_augment(config: TrainConfig, data: ImageData) -> str:
    """The training augmentation: `config.augment`, where "auto" is pad-crop for in-memory data
    and resized-crop for image files. Image files trained with pad-crop are only ever fitted to
    the input size, so their evaluation pipeline fits too (no 0.875 centre crop): `data.resize_size`
    is cleared, and that is what the run records and validates with."""
    augment = config.augment
    if augment == "auto":
        augment = "pad-crop" if data.train.in_memory else "resized-crop"
    if augment == "pad-crop":
        data.resize_size = None
    return augment


def build_loaders(config: TrainConfig, data: ImageData, device: torch.device, micro_batch: int):
    """This rank's training batches (micro-batches, augmented) and validation batches (its shard)."""
    augment = resolve_augment(config, data)
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
