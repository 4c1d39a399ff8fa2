"""What a run is made of, built from its config: data, model, optimizer, EMA, mixing, loaders."""

from __future__ import annotations

import torch
from torch import nn

from resnets.data import load_data, make_loader
from resnets.errors import ResNetsError
from resnets.models.create import create_model, resolve_spec
from resnets.models.zoo import default_input_size
from resnets.train import ranks
from resnets.train.config import TrainConfig
from resnets.weights.load import load_weights


def load_training_data(config: TrainConfig):

    return load_data(
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


def build_model(config: TrainConfig, data) -> nn.Module:

    model = create_model(
        config.model, num_classes=data.num_classes, in_channels=data.in_channels, **config.model_overrides()
    )
    if config.weights:  # fine-tuning: start from these weights (a resumed run then restores its own)
        load_weights(model, config.weights, reset_head=config.reset_head)
    return model


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW; weight decay optionally off for BN and biases.

    Both fused: one kernel updates every parameter (on CUDA and CPU), where the default (foreach)
    takes several; the grad scaler and gradient clipping work with it unchanged."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if config.decay_norm_and_bias or p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, fused=True
    )


def build_ema(model: nn.Module, config: TrainConfig):
    """An exponential moving average of weights and BN buffers, updated every step.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first n updates (as in
    TensorFlow's and timm's EMA), so early averages are not dominated by the random init.
    """
    if config.ema_decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel

    target = config.ema_decay

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        decay = min(target, (1 + n) / (10 + n))
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        else:  # BN's num_batches_tracked: a count, not something to average
            torch._foreach_copy_(averaged, current)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def build_mixing(config: TrainConfig, num_classes: int):
    """torchvision's MixUp and/or CutMix on whole batches (one of the two per batch when both)."""
    from torchvision.transforms import v2

    mixes = []
    if config.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=config.mixup_alpha, num_classes=num_classes))
    if config.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=config.cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


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


def build_loaders(config: TrainConfig, data, device: torch.device, micro_batch: int):

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
        **common,
    )
    val_loader = make_loader(data, "val", batch_size=micro_batch * config.accum_steps, **common)
    return train_loader, val_loader
