"""What `--resume RUN_DIR` may change: a run continues, it is not forbidden to move or grow.

- `HOW` fields say how and where the run executes (device, workers, threads, compile, logging,
  checkpoint cadence, where the data is): they may change, e.g. to move a run to another machine;
- `--epochs` / `--iterations` may extend (or shorten) it, in the unit the run counts in
  (schedule.relaid says what happens to the learning rate);
- everything else decides what the run computes (model, data, optimiser, schedule, batch,
  augmentation, precision, seed): changing it mid-run would make the checkpoint continue a
  different run, so it is refused, naming the flags and why.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from resnets.errors import ResNetsError
from resnets.train.config import TrainConfig, flag

HOW = frozenset(
    {
        "device",
        "workers",
        "decode_on_device",
        "decode_in_memory",
        "memory_budget",
        "threads",
        "compile",
        "compile_mode",
        "cuda_graph",
        "channels_last",
        "checkpoint_activations",
        "deterministic",
        "checkpoint_every",
        "checkpoint_every_steps",
        "keep_last",
        "skip_nonfinite",
        "tensorboard",
        "data_dir",
        "download",
        "auto_batch_size",
        "accum_steps",  # how the global batch is split, as the number of processes is
        "sync_bn",
        "eval_crops",
        "out",
    }
)
LENGTH = ("epochs", "iterations")


def resume_config(
    run_dir: Path, saved: TrainConfig, wanted: TrainConfig
) -> tuple[TrainConfig, dict[str, Any]]:
    """The config a resumed run continues with, and the fields that change ({field: (old, new)}).

    `wanted` is `saved` with the user's changes. Raises a one-line ResNetsError for a change that
    would alter what the run computes, or a length given in the unit the run does not count in.
    """
    changed = {
        f.name: (getattr(saved, f.name), getattr(wanted, f.name))
        for f in dataclasses.fields(TrainConfig)
        if f.name not in ("out", "accept_changed_data")  # where it writes; a decision of this resume
        and getattr(saved, f.name) != getattr(wanted, f.name)
    }
    refused = [k for k in changed if k not in HOW and k not in LENGTH]
    if refused:
        flags = ", ".join(flag(k) for k in refused)
        raise ResNetsError(
            f"--resume continues {run_dir} as it was started: {flags} would change what the run "
            "computes (its weights, optimizer state and schedule come from the old setting); "
            "drop them, or start a new run from its weights with --weights"
        )
    unit = "iterations" if saved.iterations is not None else "epochs"
    other = "epochs" if unit == "iterations" else "iterations"
    if other in changed and changed[other][1] is not None:
        raise ResNetsError(
            f"{run_dir} counts its length (and milestones and warm-up) in {unit}; extend it with "
            f"--{unit} instead of --{other}"
        )
    return wanted.replace(out=saved.out).validate(), changed


def describe_changes(changed: dict[str, Any]) -> str:
    """'--epochs 12 -> 24, --device cuda -> cpu' for a note and the run record."""
    return ", ".join(f"{flag(k)} {_shown(old)} -> {_shown(new)}" for k, (old, new) in changed.items())


def _shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "none" if value is None else str(value)
