"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds `epoch-NNNN.safetensors` (or `epoch-NNNN-step-SSSSSSSS.safetensors`
when saved in mid-epoch, after NNNN whole epochs and SSSSSSSS steps) (model, optimizer state, EMA, grad scaler
and RNG states as tensors) and `latest.json` (step, epoch, schedule state, history, config, and
the name of the tensor file). The JSON is written last and is the commit point: a crash while
saving leaves the previous checkpoint whole. Every write is atomic (atomic.py); `keep_last` older
tensor files are kept, each loadable on its own (its state is in its safetensors metadata), and
only files named as checkpoints are ever deleted. The tensor file's header also carries the
run's weights metadata (weights.format), so weights.load can read an unfinished run's weights.
What goes into the two files (the flattened optimizer state among it) is state.py's business.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from resnets.atomic import atomic_write, remove_stale_temps, write_json
from resnets.errors import ResNetsError, WeightsError
from resnets.text import shorten
from resnets.weights.format import check_finite as non_finite_keys

LATEST = "latest.json"
FORMAT = "resnets-checkpoint"
CHECKPOINT_NAME = re.compile(r"epoch-\d{4,}(-step-\d{8,})?\.safetensors")


def save_checkpoint(
    folder: Path,
    epoch: int,
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    *,
    keep_last: int = 1,
    mid_epoch_step: int | None = None,
    header: dict[str, str] | None = None,
) -> Path:
    """Write this epoch's tensors, commit by replacing latest.json, then keep the newest `keep_last`.

    Each tensor file also carries its JSON state in its metadata, so a kept older checkpoint is
    whole on its own (`load_checkpoint(folder, name)`). Nothing older is deleted before the commit;
    a failed write (a full disk) raises a one-line ResNetsError and leaves the last commit loadable.
    A non-finite tensor is refused: a diverged run must never overwrite a good checkpoint.
    """
    check_finite(tensors)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    name = f"epoch-{epoch:04d}" + (f"-step-{mid_epoch_step:08d}" if mid_epoch_step is not None else "")
    name += ".safetensors"
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {**(header or {}), "format": FORMAT, "state": json.dumps({**state, "tensors": name})}
    kept = [n for n in committed_names(folder) if n != name] + [name]
    kept = kept[-max(1, keep_last) :]
    try:
        atomic_write(folder / name, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))
        write_json(folder / LATEST, {**state, "tensors": name, "checkpoints": kept})
    except OSError as exc:
        before = describe_checkpoint(folder)
        raise ResNetsError(
            f"could not write checkpoint {folder / name}: {exc.strerror or exc}; "
            + (f"the last good checkpoint is still {before}" if before else "no earlier checkpoint exists")
        ) from None
    for old in folder.glob("epoch-*.safetensors"):
        if old.name not in kept and CHECKPOINT_NAME.fullmatch(old.name):
            old.unlink(missing_ok=True)
    return folder / LATEST


def check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """Raise ResNetsError naming the tensors that hold NaN or infinity (weights.format's check)."""
    bad = non_finite_keys(tensors)
    if bad:
        raise ResNetsError(f"refusing to save a checkpoint with non-finite values in {shorten(bad, 5)}")


def committed_names(folder: Path) -> list[str]:
    """The tensor files latest.json vouches for, oldest first ([] when there is no commit)."""
    try:
        state = json.loads((folder / LATEST).read_text(encoding="utf-8"))
        names = state.get("checkpoints") or [state["tensors"]]
        return [n for n in names if isinstance(n, str) and _safe_name(n)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def describe_checkpoint(folder: Path) -> str | None:
    """'<path> (epoch E, step S)' for the last committed checkpoint, or None."""
    try:
        state = json.loads((folder / LATEST).read_text(encoding="utf-8"))
        progress = state.get("progress", {})
        where = f"epoch {progress['epoch']}, step {progress['step']}" if progress else "committed"
        return f"{folder / state['tensors']} ({where})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _safe_name(name: str) -> bool:
    """A bare file name in the checkpoint folder (a tampered latest.json cannot point elsewhere)."""
    return name.endswith(".safetensors") and Path(name).name == name and not name.startswith(".")


def load_checkpoint(folder: Path, name: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and JSON state of the last committed checkpoint in `folder` (or of the kept
    tensor file `name`). Any damage is a WeightsError naming the file."""
    if name is not None:
        return _load_named(folder, name)
    latest = folder / LATEST
    if not latest.is_file():
        raise WeightsError(f"{folder}: no checkpoint to resume from ({LATEST} missing)")
    try:
        state = json.loads(latest.read_text(encoding="utf-8"))
        name = state.get("tensors") if isinstance(state, dict) else None
        if not isinstance(name, str) or not _safe_name(name):
            raise ValueError(f"'tensors' must name a .safetensors file in {folder}")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{latest}: unreadable checkpoint ({exc})") from None
    try:
        tensors = load_file(str(folder / name))
    except (OSError, ValueError, SafetensorError) as exc:  # named by latest.json, but damaged
        raise WeightsError(f"{folder / name}: unreadable checkpoint tensors ({exc})") from None
    return tensors, state


def _load_named(folder: Path, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = folder / name
    try:
        if not _safe_name(name):
            raise ValueError("not a checkpoint file name")
        with safe_open(str(path), framework="pt") as f:
            state = json.loads((f.metadata() or {})["state"])
        tensors = load_file(str(path))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise WeightsError(f"{path}: unreadable checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: unreadable checkpoint (its state is not a JSON object)")
    return tensors, state


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix.`, with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
