"""The learning rate as a pure function of the step: nothing to save but the step itself.

Step decay (He et al. 2015: lr/10 at 32k and 48k iterations on CIFAR, sec. 4.2; at epochs 30
and 60 on ImageNet, sec. 3.4), cosine decay (Loshchilov & Hutter 2017), linear warm-up (Goyal et
al. 2017) or a constant one (He et al. 2016: 0.01 for 400 iterations), and the paper's low-lr warm-up for ResNet-110, which ends when the
training error drops below a threshold rather than at a fixed step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resnets.train.config import TrainConfig


@dataclass(frozen=True)
class Schedule:
    lr: float
    kind: str
    total_steps: int
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_steps: int = 0
    warmup_lr: float = 0.0
    warmup_shape: str = "linear"
    warmup_until_error: float | None = None

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> Schedule:
        """Milestones and warm-up count iterations when the config counts iterations, else epochs."""

        def steps(value: float) -> int:
            return int(value) if config.iterations is not None else round(value * steps_per_epoch)

        total = config.iterations if config.iterations is not None else steps(config.epochs or 0)
        lr = scaled_lr(config)
        return cls(
            lr=lr,
            kind=config.schedule,
            total_steps=max(1, total),
            milestones=tuple(steps(m) for m in config.milestones),
            gamma=config.gamma,
            warmup_steps=steps(config.warmup),
            warmup_lr=config.warmup_lr if config.warmup_lr is not None else lr / 100,
            warmup_shape=config.warmup_shape,
            warmup_until_error=config.warmup_until_error,
        )

    def __call__(self, step: int, warmup_done: bool = True) -> float:
        """The learning rate for `step` (0-based); `warmup_done` ends an error-triggered warm-up."""
        if self.warmup_until_error is not None and not warmup_done:
            return self.warmup_lr
        if step < self.warmup_steps:
            if self.warmup_shape == "constant":
                return self.warmup_lr
            return self.warmup_lr + (self.lr - self.warmup_lr) * step / self.warmup_steps
        if self.kind == "step":
            return self.lr * self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr


def scaled_lr(config: TrainConfig) -> float:
    """The linear scaling rule of Goyal et al. 2017, sec. 2.1: "when the minibatch size is
    multiplied by k, multiply the learning rate by k" (their reference: 0.1 for 256 images).

    `batch_size` is the global batch, so the same config trains alike on any number of devices;
    the rule only applies when `lr_base_batch` is set, with a warm-up (sec. 2.2) for large k.
    """
    if config.lr_base_batch is None:
        return config.lr
    return config.lr * config.batch_size / config.lr_base_batch
