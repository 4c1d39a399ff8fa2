"""The runs of a reproduction: which are finished (reused as they are), which were interrupted
(resumed from their last checkpoint), which are new (trained); how long the rest should take.

A run lives in OUT/runs/<network>-seed<k>, an ordinary run directory of `resnets train`.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from resnets.errors import ResNetsError
from resnets.inspect.summary import summary as measure
from resnets.models.create import create_model
from resnets.reproduce.plan import same_experiment
from resnets.runtime.device import resolve_device
from resnets.train.checkpoint import LATEST
from resnets.train.config import TrainConfig
from resnets.train.launch import train
from resnets.train.run_dir import read_run_config

FINISHED, PARTIAL, NEW = "finished", "interrupted", "new"


@dataclass
class PlannedRun:
    """One (network, seed) of a reproduction: its config, its directory and how far it got."""

    model: str
    seed: int
    config: TrainConfig
    run_dir: Path
    state: str = NEW
    steps_done: int = 0

    @property
    def steps_left(self) -> int:
        return 0 if self.state == FINISHED else max(0, (self.config.iterations or 0) - self.steps_done)


def find_run(model: str, seed: int, config: TrainConfig, run_dir: Path) -> PlannedRun:
    """The run in `run_dir`: finished (summary.json and weights written), interrupted (a
    checkpoint to resume from) or new. A folder started without a checkpoint yet is cleared.

    Raises ResNetsError when `run_dir` holds a run of another config (another data, scale or
    recipe): a reproduction never mixes them; use another --out.
    """
    planned = PlannedRun(model, seed, config, run_dir)
    if not (run_dir / "config.json").is_file():
        return planned
    differ = same_experiment(read_run_config(run_dir), config)
    if differ:
        raise ResNetsError(
            f"{run_dir} holds a run of another configuration (it differs in "
            f"{', '.join(differ[:5])}); use another --out for this reproduction"
        )
    if (run_dir / "summary.json").is_file() and (run_dir / "model.safetensors").is_file():
        planned.state = FINISHED
        planned.steps_done = int(json.loads((run_dir / "summary.json").read_text())["steps"])
    elif (run_dir / "checkpoint" / LATEST).is_file():
        planned.state = PARTIAL
        latest = json.loads((run_dir / "checkpoint" / LATEST).read_text())
        planned.steps_done = int(latest["progress"]["step"])
    else:  # killed before its first checkpoint: nothing to resume, start it again
        shutil.rmtree(run_dir)
    return planned


def run_training(run: PlannedRun, *, console: bool = False) -> dict[str, Any]:
    """Train `run` to the end (resuming an interrupted one) with resnets.train; its summary.
    With `console`, train's per-epoch progress bar shows on stderr (its table rows do not)."""
    sink = io.StringIO()  # the per-epoch table of each run: the reproduction prints one line a run
    if run.state == PARTIAL:
        return train(None, run.run_dir, resume=True, console=console, table_stream=sink)
    return train(run.config, run.run_dir, console=console, table_stream=sink)


@dataclass
class RunResult:
    """What a finished run says: its final numbers and its curve (one row per epoch)."""

    model: str
    seed: int
    run_dir: Path
    params: int
    test_error: float  # fraction of 1, at the end of training
    train_error: float  # the running training error of the last epoch
    seconds: float
    steps: int
    curve: list[dict[str, float]] = field(default_factory=list)  # step, train_error, test_error


def read_result(run: PlannedRun) -> RunResult:
    """The numbers of a finished run, from its summary.json and metrics.csv."""
    summary = json.loads((run.run_dir / "summary.json").read_text())
    with open(run.run_dir / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    curve = [
        {
            "step": int(r["step"]),
            "train_error": 1 - float(r["train_top1"]),
            "test_error": 1 - float(r["val_top1"]),
        }
        for r in rows
    ]
    return RunResult(
        model=run.model,
        seed=run.seed,
        run_dir=run.run_dir,
        params=int(summary["params"]),
        test_error=1 - float(summary["val_top1"]),
        train_error=1 - float(summary["train_top1"]),
        seconds=float(summary["train_seconds"]),
        steps=int(summary["steps"]),
        curve=curve,
    )


# --- how long it should take ---------------------------------------------------------------------


@dataclass
class Estimate:
    """Expected seconds for the runs left, from `step_seconds` measured here for `probe` (the
    smallest network left; the largest one is timed too)."""

    seconds: float
    steps: int
    runs: int
    probe: str
    step_seconds: float
    device: str


def estimate(
    runs: list[PlannedRun], shape: tuple[int, int, int], val_images: int, train_images: int
) -> Estimate:
    """Time a few training steps of the smallest and the largest network left on this device,
    at the data's image `shape` (C, H, W) and the runs' batch; a network's step costs what the
    straight line through those two in multiply-adds (inspect.summary) says (a step has costs
    that do not grow with depth, so a ratio of multiply-adds alone overstates deep networks).
    Each run costs its remaining steps, plus one evaluation of `val_images` per epoch (a
    forward pass: a third of a training step per image)."""
    left = [r for r in runs if r.steps_left]
    if not left:
        return Estimate(0.0, 0, 0, "", 0.0, "")
    config = left[0].config
    small = min((r.model for r in left), key=macs)
    large = max((r.model for r in left), key=macs)
    device = resolve_device(config.device)
    t_small = time_steps(small, shape, config.batch_size, device)
    t_large = time_steps(large, shape, config.batch_size, device) if macs(large) > macs(small) else t_small
    span = max(1, macs(large) - macs(small))

    def per_step(model: str) -> float:
        return t_small + (t_large - t_small) * (macs(model) - macs(small)) / span

    steps_per_epoch = max(1, train_images // config.batch_size)
    total = 0.0
    for run in left:
        epochs = -(-run.steps_left // steps_per_epoch)
        evaluation = epochs * val_images / config.batch_size / 3
        total += (run.steps_left + evaluation) * per_step(run.model)
    return Estimate(total, sum(r.steps_left for r in left), len(left), small, t_small, str(device))


@functools.cache
def macs(model_name: str) -> int:
    """Multiply-adds of one image through `model_name` at its own input size (inspect.summary)."""
    return measure(model_name).macs


def time_steps(
    model_name: str, shape: tuple[int, int, int], batch: int, device: torch.device, steps: int = 4
) -> float:
    """Seconds per SGD step of `model_name` on random images (batch, *shape) on `device`: the
    median of the steps after the first (which warms up the allocator and kernels)."""
    model = create_model(model_name, in_channels=shape[0]).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] or times)
