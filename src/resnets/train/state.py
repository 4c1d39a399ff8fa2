"""The resumable state of a run: progress counters, and saving/restoring everything a resume
needs (model, optimizer, scaler, EMA, RNG states) as safetensors + JSON.

The optimizer's state is taken in torch.distributed.checkpoint's flattened form
(`get_optimizer_state_dict(..., flatten_optimizer_state_dict=True)`): a flat dict keyed by
parameter name ("state.layer1.0.conv1.weight.momentum_buffer", "param_groups.fc.bias.lr"), the
same whether the model is wrapped in DDP or not and on any number of processes. Its tensors go to
the safetensors file under "optimizer.", everything else to the JSON; nothing is pickled.
"""

from __future__ import annotations

import ast
import base64
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from resnets.errors import WeightsError
from resnets.text import first_line
from resnets.train.checkpoint import LATEST, load_checkpoint, prefixed, save_checkpoint

_FLAT = StateDictOptions(flatten_optimizer_state_dict=True)
_RUNTIME_KEYS = ("lr", "fused", "capturable", "foreach")  # how this process steps, not what it learnt


@dataclass
class TrainState:
    """Progress that is not a tensor: saved in the checkpoint's JSON."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    epoch_step: int = 0  # of which in the epoch under way (a mid-epoch checkpoint)
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # its loss, correct, images
    warmup_done: bool = False
    train_seconds: float = 0.0  # wall time of the epochs, evaluation included
    step_seconds: float = 0.0  # of which training steps
    images_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)  # updates dropped (--skip-nonfinite, ...)
    schedule_restart: list[float] | None = None  # [step, lr] where a resume laid the cosine again


def save(
    folder: Path,
    config,
    state: TrainState,
    model,
    optimizer,
    scaler,
    ema,
    mid_epoch=False,
    weights_header: dict[str, str] | None = None,
    record=None,
) -> None:
    """Write a checkpoint of the run into `folder` (checkpoint.save_checkpoint: atomic, committed
    by latest.json, refused if any tensor is not finite): model, EMA, optimizer state, torch's and
    CUDA's RNG states as tensors; progress, optimizer settings, scaler, Python's RNG and config as
    JSON, with `record` (JSON: what the run was made from, e.g. its data split's summary);
    `weights_header` (weights.format's metadata) into the tensor file's header."""
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    optim_tensors, optim_state = optimizer_state(model, optimizer)
    tensors.update({f"optimizer.{k}": v for k, v in optim_tensors.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    json_state = {
        "progress": asdict(state),
        "optimizer": optim_state,
        "scaler": scaler.state_dict(),
        "rng_python": base64.b64encode(repr(random.getstate()).encode()).decode(),
        "config": config.to_dict(),
        **(record or {}),
    }
    save_checkpoint(
        folder,
        state.epoch,
        tensors,
        json_state,
        keep_last=config.keep_last,
        mid_epoch_step=state.step if mid_epoch else None,
        header=weights_header,
    )


def restore(folder: Path, model, optimizer, scaler, ema, device: torch.device) -> TrainState:
    """Load the last checkpoint in `folder` into the given objects and return its progress (a fresh
    TrainState when the run was stopped before its first checkpoint). A checkpoint that is not this
    run's state is a WeightsError naming latest.json."""
    if not (folder / LATEST).exists():  # killed before its first checkpoint: start over
        return TrainState()
    tensors, saved = load_checkpoint(folder)
    try:
        model.load_state_dict(prefixed(tensors, "model"))
        if ema is not None:
            ema.load_state_dict(prefixed(tensors, "ema"))
        load_optimizer_state(model, optimizer, prefixed(tensors, "optimizer"), saved["optimizer"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and device.type == "cuda":
            torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))
        random.setstate(ast.literal_eval(base64.b64decode(saved["rng_python"]).decode()))
        return TrainState(**saved["progress"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, SyntaxError) as exc:
        # Valid JSON and tensors that do not make up this run's state: edited, or another run's.
        detail = f"missing {exc}" if isinstance(exc, KeyError) else first_line(exc, 200)
        raise WeightsError(f"{folder / LATEST}: not this run's training state ({detail})") from None


def optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """`optimizer`'s state over `model`'s parameters, flattened and keyed by parameter name, split
    into its tensors (momentum buffers, Adam moments and step counts) and its JSON values (the
    param groups' settings)."""
    tensors: dict[str, torch.Tensor] = {}
    values: dict[str, Any] = {}
    for key, value in get_optimizer_state_dict(model, optimizer, options=_FLAT).items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach()
        else:
            values[key] = list(value) if isinstance(value, tuple) else value
    json.dumps(values)  # a TypeError here names a setting a checkpoint cannot hold
    return tensors, values


def load_optimizer_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    values: dict[str, Any],
) -> None:
    """The inverse of `optimizer_state`. Each group keeps its own learning-rate object (a device
    tensor that a CUDA-graph step reads, or a float; the schedule sets its value every step) and
    its implementation flags (fused, capturable, foreach): the checkpoint may come from a run
    that stepped another way."""
    if not isinstance(values, dict):
        raise TypeError("the optimizer's settings are not a table")
    own = [{k: group[k] for k in _RUNTIME_KEYS if k in group} for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = 0.0  # a plain float while torch initialises the state with a zero-lr step,
    optimizer.zero_grad(set_to_none=True)  # which it skips (loading nothing) if gradients exist
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}  # Adam's betas
    set_optimizer_state_dict(model, optimizer, {**settings, **tensors}, options=_FLAT)
    for group, kept in zip(optimizer.param_groups, own):
        group.update(kept)
