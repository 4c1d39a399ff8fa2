"""The run directory: its default name, a check that a new run does not overwrite an old one,
and config.json, the record of how a run was made (config, versions, command line)."""

from __future__ import annotations

import json
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
    if (run_dir / "checkpoint").exists() or (run_dir / "config.json").exists():
        raise ResNetsError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")


def read_run_config(run_dir: Path) -> TrainConfig:
    """The config a run was made with, from its config.json: a one-line ResNetsError for a folder
    that is not a run directory or whose record is damaged."""
    record = run_dir / "config.json"
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
