"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds `epoch-NNNN.safetensors` (or `epoch-NNNN-step-SSSSSSSS.safetensors`
when saved in mid-epoch, after NNNN whole epochs and SSSSSSSS steps) (model, optimizer state, EMA, grad scaler
and RNG states as tensors) and `latest.json` (step, epoch, schedule state, history, config, and
the name of the tensor file). The JSON is written last and is the commit point: a crash while
saving leaves the previous checkpoint whole.

Nested state (an optimizer's state_dict) is split by `split_tensors` into a JSON skeleton whose
tensors are replaced by {"__tensor__": key}; `join_tensors` puts them back. Dicts with non-string
keys (optimizer state is keyed by parameter index) are kept as {"__items__": [[key, value], ...]}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from resnets.atomic import atomic_write, write_json
from resnets.errors import WeightsError

LATEST = "latest.json"


def split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of `obj` with each tensor moved into `tensors` under a key from `prefix`."""
    if isinstance(obj, torch.Tensor):
        key = prefix
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, split_tensors(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix} in a checkpoint")


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {k: join_tensors(v, tensors) for k, v in obj["__items__"]}
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def save_checkpoint(
    folder: Path,
    epoch: int,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    *,
    mid_epoch_step: int | None = None,
) -> Path:
    """Write this epoch's tensors, then commit by replacing latest.json; drop older tensor files."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}" + (f"-step-{mid_epoch_step:08d}" if mid_epoch_step is not None else "")
    name += ".safetensors"
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(
        folder / name, lambda tmp: save_file(cpu, str(tmp), metadata={"format": "resnets-checkpoint"})
    )
    write_json(folder / LATEST, {**state, "tensors": name})
    for old in folder.glob("epoch-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / LATEST


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and JSON state of the last committed checkpoint in `folder`."""
    latest = folder / LATEST
    if not latest.is_file():
        raise WeightsError(f"{folder}: no checkpoint to resume from ({LATEST} missing)")
    try:
        state = json.loads(latest.read_text(encoding="utf-8"))
        tensors = load_file(str(folder / state["tensors"]))
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"{folder}: unreadable checkpoint ({exc})") from None
    return tensors, state


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix.`, with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
