"""The learning rate as a pure function of the step: nothing to save but the step itself.

Step decay (He et al. 2015: lr/10 at 32k and 48k iterations on CIFAR, sec. 4.2; at epochs 30
and 60 on ImageNet, sec. 3.4), cosine decay (Loshchilov & Hutter 2017), linear warm-up (Goyal et
al. 2017) or a constant one (He et al. 2016: 0.01 for 400 iterations), and the paper's low-lr warm-up for ResNet-110, which ends when the
training error drops below a threshold rather than at a fixed step.

A run resumed with a new length (`--resume RUN --epochs N`) keeps a step schedule's milestones;
its cosine is laid again from the step it resumes at to the new end (`relaid`): from the
learning rate it had there, or, when the run had finished its schedule (lr 0), from the peak
again, which is SGDR's warm restart (Loshchilov & Hutter 2017). The restart point is saved
with the run (TrainState.schedule_restart), so the learning rate stays a function of the step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
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
    restart: tuple[int, float] | None = None  # (step, lr): a cosine laid again from there

    @classmethod
    def from_config(
        cls, config: TrainConfig, steps_per_epoch: int, restart: Sequence[float] | None = None
    ) -> Schedule:
        """Milestones and warm-up count iterations when the config counts iterations, else epochs;
        `restart` is a resumed run's (step, lr) where its cosine was laid again."""

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
            restart=(int(restart[0]), float(restart[1])) if restart else None,
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
            start, peak = (
                self.restart if self.restart and step >= self.restart[0] else (self.warmup_steps, self.lr)
            )
            progress = min(1.0, (step - start) / max(1, self.total_steps - start))
            return peak * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr


def relaid(before: Schedule, after: Schedule, step: int) -> tuple[Schedule, str]:
    """The schedule a run continues with from `step` when its length changes from `before`'s to
    `after`'s, and one line saying what happens to the learning rate.

    Step and constant schedules keep their shape (milestones stay where they were); a cosine is
    laid again from `step` to the new end, starting at the rate `before` gives at `step`, or at
    the peak rate (a warm restart, SGDR) when the run had finished `before`.
    """
    end = f"to step {after.total_steps} (was {before.total_steps})"
    if after.kind != "cosine":
        kept = (
            f", milestones kept at steps {', '.join(map(str, after.milestones))}" if after.milestones else ""
        )
        return after, f"{after.kind} schedule continues {end}{kept}"
    if step <= after.warmup_steps:  # still warming up: the cosine starts after warm-up anyway
        return after, f"cosine schedule laid over the new length, {end}"
    finished = step >= before.total_steps
    start_lr = after.lr if finished else before(step)
    why = (
        " (a warm restart at the peak rate, as in SGDR: the run had finished its schedule)"
        if finished
        else ""
    )
    line = f"cosine schedule laid again from step {step} at lr {start_lr:.4g} down to 0 {end}{why}"
    return dataclasses.replace(after, restart=(step, start_lr)), line


def scaled_lr(config: TrainConfig) -> float:
    """The linear scaling rule of Goyal et al. 2017, sec. 2.1: "when the minibatch size is
    multiplied by k, multiply the learning rate by k" (their reference: 0.1 for 256 images).

    `batch_size` is the global batch, so the same config trains alike on any number of devices;
    the rule only applies when `lr_base_batch` is set, with a warm-up (sec. 2.2) for large k.
    """
    if config.lr_base_batch is None:
        return config.lr
    return config.lr * config.batch_size / config.lr_base_batch
