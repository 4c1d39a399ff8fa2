"""The training step: one optimizer step over its micro-batches. `resnets train` runs it and
`resnets bench --mode train` times it; both build it with `build_step`.

    mix                                 MixUp / CutMix on each micro-batch's inputs
    for each micro-batch:               all but the last under DDP's no_sync (no all-reduce)
        forward, loss                   under autocast
        guard                           a non-finite loss is recorded on the device, or (with
                                        --skip-nonfinite) drops the whole step
        backward                        of loss / accum_steps, through the grad scaler (fp16)
    unscale, clip                       --grad-clip
    optimizer step, zero_grad           fused SGD or AdamW; the scaler skips an overflowed step
    EMA update                          --ema-decay

The step returns device tensors (loss sum, correct, images), so the loop adds them up without a
host sync per step. A step whose micro-batch holds fewer images than BatchNorm can train on
(`min_batch`: only a folder batch that unreadable files shrank can) is dropped, on every rank.

On CUDA, with static shapes and the data already on the GPU, everything from the forward to
zero_grad is captured once as a CUDA graph (after a few eager warm-up steps) and replayed from
then on: the CPU launches one graph per step instead of hundreds of kernels, which is what makes
He et al.'s small CIFAR networks fast. The learning rate then lives in device tensors (`set_lr`
fills them) and the guard's step number in another; mixing and the EMA update run outside the
graph. `cuda_graph_blocker` says when a step cannot be captured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from resnets.errors import ResNetsError
from resnets.train import ranks
from resnets.train.config import TrainConfig
from resnets.train.device import autocast, speed_up, to_input, use_channels_last
from resnets.train.distributed import no_sync
from resnets.train.freeze import head_parameter_ids
from resnets.train.guards import LossGuard

GRAPH_WARMUP = 3  # eager steps before the CUDA graph is captured (cuDNN autotuning, optimizer state)

Batch = tuple[torch.Tensor, torch.Tensor]


# --- the optimizer -----------------------------------------------------------------------------


def build_optimizer(
    model: nn.Module, config: TrainConfig, *, tensor_lr: bool = False
) -> torch.optim.Optimizer:
    """SGD with momentum (He et al. 2015, sec. 3.4: momentum 0.9, weight decay 1e-4 by default) or
    AdamW, over `model`'s trainable parameters (already on their device; frozen ones, without
    gradients, are left out); weight decay optionally off for BN parameters and biases
    (`decay_norm_and_bias=False`); everything but the classifier at `lr_backbone` x the learning
    rate when that is set (each group's `lr_scale`, which `set_lr` applies).

    Both fused: one kernel updates every parameter (on CUDA and CPU), where the default (foreach)
    takes several; the grad scaler and gradient clipping work with it unchanged. `tensor_lr` keeps
    each group's learning rate in a device tensor, so a CUDA-graph-captured step reads the current
    value: change it with `set_lr`.
    """
    head = head_parameter_ids(model)
    scales = {False: config.lr_backbone if config.lr_backbone is not None else 1.0, True: 1.0}
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            decays = config.decay_norm_and_bias or p.ndim > 1
            in_head = config.lr_backbone is not None and id(p) in head
            buckets.setdefault((decays, in_head), []).append(p)
    if not buckets:
        raise ResNetsError("nothing to train: every parameter is frozen")
    groups: list[dict[str, Any]] = []
    for (decays, in_head), params in sorted(buckets.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        group = {"params": params, "weight_decay": config.weight_decay if decays else 0.0}
        if config.lr_backbone is not None:  # only then: other runs' checkpoints keep their keys
            group["lr_scale"] = scales[in_head]
        lr = config.lr * group.get("lr_scale", 1.0)
        group["lr"] = torch.tensor(lr, device=params[0].device) if tensor_lr else lr
        groups.append(group)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, fused=True, capturable=tensor_lr)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, fused=True
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate in place to `lr` x its `lr_scale` (tensor learning rates
    keep their storage)."""
    for group in optimizer.param_groups:
        value = lr * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def build_criterion(config: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy (with `label_smoothing`) of logits (N, classes) against class indices (N,)
    or, after MixUp/CutMix, class probabilities (N, classes)."""
    return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)


def build_ema(model: nn.Module, config: TrainConfig) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights and BN buffers (None without
    `ema_decay`); `TrainStep` updates it after every optimizer step."""
    if config.ema_decay is None:
        return None
    return AveragedModel(model, use_buffers=True)


def build_mixing(
    config: TrainConfig, num_classes: int
) -> Callable[[torch.Tensor, torch.Tensor], Batch] | None:
    """torchvision's MixUp and/or CutMix on whole batches (one of the two per batch when both):
    images (N, C, H, W) and class indices (N,) in, mixed images and class probabilities
    (N, num_classes) out (Zhang et al. 2018; Yun et al. 2019). None when both alphas are 0."""
    from torchvision.transforms import v2

    mixes = []
    if config.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=config.mixup_alpha, num_classes=num_classes))
    if config.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=config.cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


# --- when the step can be one CUDA graph ---------------------------------------------------------


def cuda_graph_blocker(
    config: TrainConfig, device: torch.device, *, in_memory: bool, world_size: int
) -> str | None:
    """Why the whole training step cannot be captured as one CUDA graph here; None when it can.

    A graph replays fixed kernels on fixed memory: it needs CUDA, batches of one shape already on
    the GPU (in-memory data; every training batch of an epoch is full), and no host decision
    inside the step.
    """
    if device.type != "cuda":
        return "it needs a CUDA device"
    if world_size > 1:
        return "it needs a single process (DDP all-reduces gradients outside any graph)"
    if not in_memory:
        return "it needs in-memory data on the GPU (image folders are decoded by DataLoader workers)"
    if config.precision == "fp16":
        return "fp16 needs a grad scaler, whose overflow check syncs with the CPU (use bf16)"
    if config.skip_nonfinite:
        return "--skip-nonfinite decides on the CPU whether each step happens"
    if config.checkpoint_activations:
        return (
            "activation checkpointing recomputes blocks with saved RNG states, outside what a graph replays"
        )
    if config.compile and config.compile_mode in ("reduce-overhead", "max-autotune"):
        return f"compile mode {config.compile_mode!r} records CUDA graphs of its own, which cannot be captured inside another"
    return None


def use_cuda_graph(config: TrainConfig, device: torch.device, *, in_memory: bool, world_size: int) -> bool:
    """The decision `config.cuda_graph` asks for: None captures whenever `cuda_graph_blocker` finds
    nothing in the way, True insists (a ResNetsError says what is in the way), False never does."""
    if config.cuda_graph is False:
        return False
    blocker = cuda_graph_blocker(config, device, in_memory=in_memory, world_size=world_size)
    if blocker is not None and config.cuda_graph:
        raise ResNetsError(f"--cuda-graph: the training step cannot be one CUDA graph here: {blocker}")
    return blocker is None


# --- the step ------------------------------------------------------------------------------------


class StepResult(NamedTuple):
    """What one optimizer step gives back to the loop."""

    stats: torch.Tensor  # float64 (3,) on the device: loss sum, correct (top-1), images
    applied: bool  # False when --skip-nonfinite dropped the update


class TrainStep:
    """One optimizer step over `accum_steps` micro-batches: see the module docstring.

    `model` holds the parameters (the optimizer's, the EMA's, what is saved); `forward` is the
    module the step calls (resnets.optimize's fast path, around `ddp` when there is one). With
    `cuda_graph`, calls after `graph_warmup` eager ones replay one captured CUDA graph: shapes must
    stay fixed, and the returned stats are a static buffer (add them up before the next call).
    """

    def __init__(
        self,
        model: nn.Module,
        forward: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        precision: str = "fp32",
        channels_last: bool = False,
        scaler: torch.amp.GradScaler | None = None,
        accum_steps: int = 1,
        grad_clip: float | None = None,
        guard: LossGuard | None = None,
        ema: AveragedModel | None = None,
        ema_decay: float = 0.999,
        mixing: Callable[[torch.Tensor, torch.Tensor], Batch] | None = None,
        ddp: nn.Module | None = None,
        all_ranks: bool = False,
        cuda_graph: bool = False,
        graph_warmup: int = GRAPH_WARMUP,
        min_batch: int = 1,
    ) -> None:
        self.model, self.forward, self.optimizer = model, forward, optimizer
        self.device = next(model.parameters()).device
        self.criterion = criterion
        self.precision = precision
        self.amp = autocast(self.device, precision)
        self.channels_last = channels_last
        self.scaler = scaler or torch.amp.GradScaler(self.device.type, enabled=False)
        self.accum_steps = accum_steps
        self.grad_clip = grad_clip
        self.guard = guard or LossGuard()
        self.ema, self.ema_decay, self._ema_updates = ema, ema_decay, None
        self.mixing = mixing
        self.ddp = ddp
        self.all_ranks = all_ranks
        self.cuda_graph = cuda_graph
        if cuda_graph and (self.device.type != "cuda" or self.scaler.is_enabled()):
            raise ResNetsError("a CUDA-graph training step needs a CUDA model and fp32 or bf16")
        self.graph_warmup = max(1, graph_warmup)
        self.min_batch = min_batch
        self.graph: torch.cuda.CUDAGraph | None = None
        self._calls = 0
        self._static: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._static_stats: torch.Tensor | None = None
        self._number: torch.Tensor | None = None  # the step number, in device memory for the graph
        self._side: torch.cuda.Stream | None = None

    def __call__(self, micro_batches: Sequence[Batch], step: int) -> StepResult:
        """Optimizer step number `step` (1-based, for the guard's messages) over `micro_batches`:
        `accum_steps` pairs of images (N, C, H, W) and class indices (N,) on the device."""
        if len(micro_batches) != self.accum_steps:
            raise ResNetsError(f"a step takes {self.accum_steps} micro-batch(es), got {len(micro_batches)}")
        if self.min_batch > 1 and self._too_small(micro_batches):
            return StepResult(torch.zeros(3, dtype=torch.float64, device=self.device), False)
        batches = [self._prepare(x, y) for x, y in micro_batches]
        if self.cuda_graph:
            result = StepResult(self._graphed(batches, step), True)
        else:
            result = self._step(batches, step)
        if result.applied and self.ema is not None:
            self._update_ema()
        return result

    def describe(self) -> dict[str, Any]:
        """What this step runs: the fast path's options, the optimizer, the CUDA graph."""
        config = getattr(self.forward, "config", None)
        fused = self.optimizer.param_groups[0].get("fused")
        return {
            **(config.to_dict() if config is not None else {}),
            "optimizer": f"{type(self.optimizer).__name__}(fused={bool(fused)})",
            "cuda_graph_step": self.cuda_graph,
            "accum_steps": self.accum_steps,
            "grad_scaler": self.scaler.is_enabled(),
        }

    # --- the pieces --------------------------------------------------------------------------

    def _too_small(self, micro_batches: Sequence[Batch]) -> bool:
        """Whether a micro-batch has fewer images than BatchNorm can train on (unreadable files
        skipped out of a folder batch): the step is then dropped, on every rank alike."""
        small = any(len(y) < self.min_batch for _, y in micro_batches)
        if self.all_ranks:
            flag = torch.tensor([float(small)], dtype=torch.float64, device=self.device)
            small = bool(ranks.reduce_sums(flag)[0] > 0)
        return small

    def _prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, targets, labels): mixed inputs and soft targets when mixing, else x and y."""
        inputs, targets = self.mixing(x, y) if self.mixing is not None else (x, y)
        return to_input(inputs, self.channels_last), targets, y

    def _step(self, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], step) -> StepResult:
        """The step itself: what a CUDA graph captures (`step` is then a device tensor)."""
        parts, dropped = [], False
        for i, (inputs, targets, labels) in enumerate(batches):
            last = i == len(batches) - 1
            with no_sync(self.ddp, skip=not last):
                with self.amp:
                    logits = self.forward(inputs)
                    loss = self.criterion(logits, targets)
                admitted = self.guard.admit(loss, step, self.all_ranks)
                if admitted:
                    self.scaler.scale(loss / self.accum_steps).backward()
                    n = torch.full((), len(labels), dtype=torch.float64, device=logits.device)
                    correct = (logits.argmax(1) == labels).sum().double()
                    parts.append(torch.stack([loss.detach().double() * n, correct, n]))
            dropped |= not admitted
        stats = (
            torch.stack(parts).sum(0) if parts else torch.zeros(3, dtype=torch.float64, device=self.device)
        )
        if dropped:  # a skipped non-finite loss drops its whole accumulated step
            self.optimizer.zero_grad(set_to_none=True)
            return StepResult(stats, False)
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(stats, True)

    def _graphed(
        self, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], step: int
    ) -> torch.Tensor:
        """Eager steps on a side stream first (compilation, cuDNN autotuning, optimizer state),
        then one capture into static buffers, then replays."""
        if self._number is None:
            self._number = torch.zeros((), dtype=torch.float64, device=self.device)
        self._number.fill_(step)
        if self.graph is None and self._calls < self.graph_warmup:
            self._calls += 1
            self._side = self._side or torch.cuda.Stream()
            self._side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self._side):
                stats = self._step(batches, self._number).stats
            torch.cuda.current_stream().wait_stream(self._side)
            return stats
        if self.graph is None:
            self._static = [tuple(t.clone() for t in batch) for batch in batches]  # type: ignore[misc]
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._static_stats = self._step(self._static, self._number).stats
        else:
            for static, batch in zip(self._static, batches):
                for buffer, value in zip(static, batch):
                    if buffer.shape != value.shape:
                        raise ResNetsError(
                            f"a CUDA-graph step replays fixed shapes {tuple(buffer.shape)}; got "
                            f"{tuple(value.shape)} (every batch must be full)"
                        )
                    buffer.copy_(value, non_blocking=True)
        self.graph.replay()
        assert self._static_stats is not None
        return self._static_stats

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema = decay * ema + (1 - decay) * model over weights and BN buffers (counts copied),
        with the decay ramped up as min(decay, (1 + n) / (10 + n)) over the first n updates (as in
        TensorFlow's and timm's EMA) so early averages are not dominated by the random init. The
        update count is kept on the host: no sync per step."""
        ema = self.ema
        assert ema is not None
        if self._ema_updates is None:
            self._ema_updates = int(ema.n_averaged)  # once: a resumed run's count
        n = self._ema_updates
        averaged = [*ema.module.parameters(), *ema.module.buffers()]
        current = [*self.model.parameters(), *self.model.buffers()]
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        counts = [(a, c) for a, c in zip(averaged, current) if not a.is_floating_point()]
        if n == 0:
            torch._foreach_copy_([a for a, _ in floats], [c for _, c in floats])
        elif floats:
            decay = min(self.ema_decay, (1 + n) / (10 + n))
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - decay)
        if counts:  # BN's num_batches_tracked: a count, not something to average
            torch._foreach_copy_([a for a, _ in counts], [c for _, c in counts])
        ema.n_averaged += 1
        self._ema_updates = n + 1


# --- the one builder -----------------------------------------------------------------------------


def build_step(
    config: TrainConfig,
    model: nn.Module,
    device: torch.device,
    *,
    num_classes: int,
    in_memory: bool,
    world_size: int = 1,
    ddp: nn.Module | None = None,
    forward: nn.Module | None = None,
    checkpoint_dir: Path | None = None,
    min_batch: int = 1,
) -> TrainStep:
    """The training step `config` asks for over `model`: the one `train` runs and `bench` times.

    Builds the fast forward (`speed_up`, around `ddp` when given; or `forward` when given, to reuse
    a compiled one), the optimizer (tensor learning rates when graphed), the grad scaler (fp16),
    the criterion, the loss guard (naming `checkpoint_dir` in its stop message), the EMA and
    MixUp/CutMix (over `num_classes`), and decides the CUDA graph (`use_cuda_graph`: `in_memory`
    data, `world_size` processes). A step whose micro-batch holds fewer than `min_batch` images
    (preflight.min_micro_batch; only folder data can shrink a batch, by unreadable files) is
    dropped rather than fed to BatchNorm. Raises ResNetsError for a combination that cannot run.
    """
    graph = use_cuda_graph(config, device, in_memory=in_memory, world_size=world_size)
    forward = forward if forward is not None else speed_up(ddp if ddp is not None else model, config, device)
    optimizer = build_optimizer(model, config, tensor_lr=graph)
    return TrainStep(
        model,
        forward,
        optimizer,
        criterion=build_criterion(config),
        precision=config.precision,
        channels_last=use_channels_last(config, device),
        scaler=torch.amp.GradScaler(device.type, enabled=config.precision == "fp16"),
        accum_steps=config.accum_steps,
        grad_clip=config.grad_clip,
        guard=LossGuard(config.skip_nonfinite, checkpoint_dir),
        ema=build_ema(model, config),
        ema_decay=config.ema_decay or 0.0,
        mixing=build_mixing(config, num_classes),
        ddp=ddp if world_size > 1 else None,
        all_ranks=world_size > 1,
        cuda_graph=graph,
        min_batch=min_batch,
    )
