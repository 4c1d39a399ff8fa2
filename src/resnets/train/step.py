"""The training step (to be unified: train/loop.py still runs its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnets.errors import ResNetsError


def make_optimizer(
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
    *,
    device: str | torch.device = "cpu",
    tensor_lr: bool = False,
) -> torch.optim.SGD:
    """SGD as the paper trains (sec. 3.4: momentum 0.9, weight decay 1e-4), in one fused kernel.

    `fused=True` updates every parameter in one launch on CUDA and CPU, where the default
    (foreach) takes several. `tensor_lr=True` keeps the learning rate in a device tensor, so a
    CUDA-graph-captured step reads the current value: change it with `set_lr`.
    """
    dev = torch.device(device)
    fused = dev.type in ("cuda", "cpu")
    rate: float | torch.Tensor = torch.tensor(lr, device=dev) if tensor_lr else lr
    return torch.optim.SGD(
        params, lr=rate, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, fused=fused
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate in place (tensor learning rates keep their storage)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


TrainStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    precision: str = "fp32",
    cuda_graph: bool | None = None,
    warmup: int = 3,
) -> TrainStep:
    """`step(x, y) -> loss`: zero the grads, forward, loss, backward, update.

    On CUDA (unless `cuda_graph=False`) the whole step is captured once as a CUDA graph after
    `warmup` ordinary steps and replayed from then on, so the CPU launches one graph per step
    instead of hundreds of kernels (He et al.'s CIFAR nets are small enough for launches to
    dominate). Every call is one real step on its own batch. A captured step needs fixed
    shapes: the last, smaller batch of an epoch must be dropped or padded. fp16 needs a
    GradScaler, whose overflow check syncs with the CPU, so fp16 steps are never captured.
    """
    device = next(model.parameters()).device
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    step = _eager_step(model, optimizer, loss_fn, scaler)
    if cuda_graph is None:
        cuda_graph = device.type == "cuda" and scaler is None
    if not cuda_graph:
        return step
    if device.type != "cuda" or scaler is not None:
        raise ResNetsError(
            "a CUDA-graph train step needs a CUDA model and fp32 or bf16 (fp16 needs a GradScaler)"
        )
    return CudaGraphStep(step, warmup)


def _eager_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scaler: torch.amp.GradScaler | None,
) -> TrainStep:
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss.detach()

    return step


class CudaGraphStep:
    """Runs `step` eagerly `warmup` times on a side stream (compiling, cuDNN autotuning and
    allocating optimizer state), then captures it into a CUDA graph with static input buffers
    and replays it. The returned loss is a static buffer too: read or clone it before the next
    call if you keep it."""

    def __init__(self, step: TrainStep, warmup: int = 3) -> None:
        self.step = step
        self.warmup = max(1, warmup)
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.loss: torch.Tensor | None = None
        self.side = torch.cuda.Stream()

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = self.step(x, y)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        if self.graph is None:
            self.static = (x.clone(), y.clone())
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.step(*self.static)
        else:
            assert self.static is not None
            if x.shape != self.static[0].shape or y.shape != self.static[1].shape:
                raise ResNetsError(
                    f"a CUDA-graph step replays fixed shapes {tuple(self.static[0].shape)}; got "
                    f"{tuple(x.shape)} (drop or pad the last batch)"
                )
            self.static[0].copy_(x, non_blocking=True)
            self.static[1].copy_(y, non_blocking=True)
        self.graph.replay()
        assert self.loss is not None
        return self.loss
