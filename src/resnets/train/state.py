"""The resumable state of a run: progress counters, and saving/restoring everything a resume
needs (model, optimizer, scaler, EMA, RNG states) as safetensors + JSON."""

from __future__ import annotations

import base64
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnets.errors import WeightsError
from resnets.train.checkpoint import (
    LATEST,
    join_tensors,
    load_checkpoint,
    prefixed,
    save_checkpoint,
    split_tensors,
)


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
    skipped_steps: list[int] = field(default_factory=list)  # non-finite losses under --skip-nonfinite


def save(folder: Path, config, state: TrainState, model, optimizer, scaler, ema, mid_epoch=False) -> None:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    optim_state = split_tensors(optimizer.state_dict(), "optimizer", tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    json_state = {
        "progress": asdict(state),
        "optimizer": optim_state,
        "scaler": scaler.state_dict(),
        "rng_python": base64.b64encode(repr(random.getstate()).encode()).decode(),
        "config": config.to_dict(),
    }
    save_checkpoint(
        folder,
        state.epoch,
        tensors,
        json_state,
        keep_last=config.keep_last,
        mid_epoch_step=state.step if mid_epoch else None,
    )


def restore(folder: Path, model, optimizer, scaler, ema, device: torch.device) -> TrainState:
    import ast

    if not (folder / LATEST).exists():  # killed before its first checkpoint: start over
        return TrainState()
    tensors, saved = load_checkpoint(folder)
    try:
        model.load_state_dict(prefixed(tensors, "model"))
        if ema is not None:
            ema.load_state_dict(prefixed(tensors, "ema"))
        optimizer.load_state_dict(join_tensors(saved["optimizer"], tensors))
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and device.type == "cuda":
            torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))
        random.setstate(ast.literal_eval(base64.b64decode(saved["rng_python"]).decode()))
        return TrainState(**saved["progress"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, SyntaxError) as exc:
        # Valid JSON and tensors that do not make up this run's state: edited, or another run's.
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:200]
        raise WeightsError(f"{folder / LATEST}: not this run's training state ({detail})") from None
