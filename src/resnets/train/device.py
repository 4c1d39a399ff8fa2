"""Device, precision and the speed hook of training.

`speed_up` is the one place that turns a model into the fastest form to train: it is
`resnets.optimize(model, mode="train", ...)` with the run's choices. The loop keeps the plain
model for optimizer, EMA and saving, and calls the returned module for the forward pass (they
share parameters).
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager

import torch
from torch import nn

from resnets.errors import ResNetsError
from resnets.runtime import device as runtime_device
from resnets.runtime.optimize import optimize
from resnets.train.config import TrainConfig


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Channels-last by default on CUDA (cuDNN's NHWC kernels); on CPU only when asked."""
    return device.type == "cuda" if config.channels_last is None else config.channels_last


def set_determinism(config: TrainConfig, device: torch.device) -> None:
    """Torch's seed, threads and algorithm choice. Deterministic mode trades speed for
    bit-identical reruns. (Python's RNG is seeded by `seed_python` once the run is built.)"""
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cudnn.deterministic = config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = not config.deterministic
        torch.backends.cudnn.allow_tf32 = not config.deterministic
    torch.manual_seed(config.seed)


def seed_python(config: TrainConfig) -> None:
    """Seed Python's RNG, part of the bit-identical state a checkpoint keeps. Called after the run
    is built: libraries the data and model code import on first use may draw from it at import
    time (rich, imported by scikit-learn, does), which would make a fresh process's stream differ
    from one that had imported them already."""
    random.seed(config.seed)


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """runtime.device.autocast, refusing fp16 off CUDA (training would need its grad scaler there)."""
    if precision == "fp16" and device.type != "cuda":
        raise ResNetsError("--precision fp16 needs CUDA; on CPU use bf16 or fp32")
    return runtime_device.autocast(device, precision)


def speed_up(model: nn.Module, config: TrainConfig, device: torch.device) -> nn.Module:
    """The module to call in the training step: `model` on `device`, channels-last, compiled and
    with checkpointed activations as the config asks (the loop's own autocast covers precision)."""
    return optimize(
        model,
        mode="train",
        device=device,
        precision="fp32",
        compile=config.compile,
        compile_mode=config.compile_mode if config.compile else None,
        channels_last=use_channels_last(config, device),
        checkpoint_activations=config.checkpoint_activations,
    )


def to_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """`x` (N, C, H, W) in the memory format the network runs in."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
