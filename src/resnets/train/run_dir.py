"""The run directory: its default name, a check that a new run does not overwrite an old one,
config.json, the record of how a run was made (config, versions, command line, the data and a
summary of its split), and split.json, the split itself."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.atomic import write_json
from resnets.errors import ResNetsError
from resnets.train.config import TrainConfig
from resnets.version import __version__


def run_record(
    config: TrainConfig, data, model: nn.Module, device: torch.device, command, world_size: int
) -> dict[str, Any]:
    """config.json: the resolved config plus what is needed to trust and repeat the run."""
    import numpy
    import torchvision

    return {
        "config": config.to_dict(),
        "seed": config.seed,
        "command": command if command is not None else sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "world_size": world_size,
        "data": {
            "name": data.name,
            "classes": data.classes,
            "train_images": len(data.train),
            "val_images": len(data.val),
            "input_size": data.input_size,
            "in_channels": data.in_channels,
            "mean": list(data.mean),
            "std": list(data.std),
            "split": data.split.summary() if data.split is not None else None,
            "notes": list(data.messages),
            "normalize": config.normalize,
        },
        "model": {
            "name": config.model,
            "spec": model.spec.to_dict(),
            "params": sum(p.numel() for p in model.parameters()),
        },
        "versions": {
            "resnets": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
    }


def record_resume(
    run_dir: Path,
    config: TrainConfig,
    changed: dict[str, Any],
    command,
    device: torch.device,
    world_size: int,
    step: int,
) -> None:
    """Add a resume to config.json: the config it continues with becomes the run's (so the next
    resume and `resnets eval` read it), and "resumes" lists when, where, from which step, with
    which command and which changes ({field: [old, new]})."""
    path = run_dir / "config.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record["config"] = config.to_dict()
    record.setdefault("resumes", []).append(
        {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "at_step": step,
            "command": command if command is not None else sys.argv,
            "device": str(device),
            "world_size": world_size,
            "changed": {k: list(v) for k, v in changed.items()},
        }
    )
    write_json(path, record)


def write_split(run_dir: Path, data) -> None:
    """RUN_DIR/split.json: the run's split item by item (data/split.py), what eval and --resume
    read back instead of splitting again."""
    if data.split is not None:
        data.split.write(run_dir)


def default_run_dir(config: TrainConfig, root: str | Path = "runs", run_id: str | None = None) -> Path:
    """runs/<model>-<data>-<UTC time>, with a numeric suffix if that exists already.

    With a `run_id` (torchrun's rendezvous id), runs/<model>-<data>-<run_id>: the same path on
    every rank and after every restart of the group.
    """
    data = Path(config.data).name if ("/" in config.data or "\\" in config.data) else config.data
    model = config.model if config.model.replace("_", "").isalnum() else "custom"
    if run_id is not None:
        if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", run_id):
            run_id = run_id[:8]  # torchrun's own uuid4: the first 8 digits are unique enough
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
        return Path(root) / f"{model}-{data}-{safe}"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{model}-{data}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_fresh_run_dir(run_dir: Path) -> None:
    """Refuse, before anything is built or written, a run directory that cannot take a new run:
    one that holds a run already, a file, a path through a file, or a folder we cannot write."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ResNetsError(f"--out {run_dir} is a file, not a folder; name a new folder for the run")
    if (run_dir / "checkpoint").exists() or (run_dir / "config.json").exists():
        raise ResNetsError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    existing = next(p for p in (run_dir, *run_dir.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ResNetsError(
            f"--out {run_dir}: {existing} is a file, so the run directory cannot be made there"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ResNetsError(f"--out {run_dir}: {existing} is not writable")


def read_run_config(run_dir: Path) -> TrainConfig:
    """The config a run was made with, from its config.json: a one-line ResNetsError for a folder
    that is not a run directory or whose record is damaged."""
    record = run_dir / "config.json"
    if not run_dir.exists():
        raise ResNetsError(f"{run_dir}: no such run directory")
    if not record.is_file():
        raise ResNetsError(f"{run_dir}: not a run directory (no config.json)")
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, bad UTF-8
        raise ResNetsError(f"{record}: unreadable run record ({type(exc).__name__})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise ResNetsError(f'{record}: not a run record (no "config" table)')
    try:
        return TrainConfig.from_dict(saved["config"])
    except ResNetsError as exc:
        raise ResNetsError(f"{record}: {exc}") from None
