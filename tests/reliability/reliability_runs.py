"""Helpers of the reliability suite: the tiny deterministic CPU run every scenario trains, the CLI
in a real process (when it has to die, through tests/fault_child.py; in this process: the run_cli
fixture), a diverging
loss injected in this process, and a bit-for-bit comparison of two runs' full training state. A
module of its own (not conftest) so that tests import it by a name no other folder's conftest
shares."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))  # cifar_format, the CIFAR writer
from safetensors.torch import load_file

import resnets
from resnets.train import step as train_step

FAULT_CHILD = Path(__file__).resolve().parents[1] / "fault_child.py"

# 96 training images in batches of 16: 6 steps per epoch, 18 in all. Everything that carries state
# across steps is on: momentum, EMA, the global RNG (MixUp, drop path), Python's RNG.
STEPS_PER_EPOCH, EPOCHS = 6, 3
TINY = [
    "--model", "basic:1-1-1:4-8-16",
    "--data", "synthetic",
    "--synthetic-count", "120",
    "--synthetic-classes", "4",
    "--input-size", "8",
    "--batch-size", "16",
    "--epochs", str(EPOCHS),
    "--deterministic",
    "--threads", "1",
    "--ema-decay", "0.9",
    "--mixup-alpha", "0.4",
    "--drop-path-rate", "0.2",
]  # fmt: skip
TIMING = ("seconds", "images_per_second", "train_seconds", "step_seconds")


def cli_process(*args: str, faults: tuple[str, ...] = (), cwd: Path | None = None):
    """`resnets ARGS` in a real process (for faults that kill it), with the `faults` options of
    tests/fault_child.py injected."""
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, str(FAULT_CHILD), *faults, "--", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def poison_loss(monkeypatch, kind: str, at_step: int) -> None:
    """The training loss of step `at_step` (1-based; one micro-batch per step) becomes `kind`
    ("nan" or "inf"), once, still attached to the graph: as a diverging run's would."""
    real = train_step.build_criterion

    def build_criterion(config):
        criterion, calls = real(config), []

        def poisoned(logits, targets):
            calls.append(1)
            loss = criterion(logits, targets)
            return loss * float(kind) if len(calls) == at_step else loss

        return poisoned

    monkeypatch.setattr(train_step, "build_criterion", build_criterion)


def checkpoint_state(run_dir: Path) -> SimpleNamespace:
    folder = run_dir / "checkpoint"
    latest = json.loads((folder / "latest.json").read_text())
    return SimpleNamespace(latest=latest, tensors=load_file(folder / latest["tensors"]))


def without_timing(obj):
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


def assert_same_training_state(expected: Path, actual: Path) -> None:
    """Final weights, and the last checkpoint's model, EMA, optimizer, RNG states, grad scaler,
    schedule position (step, epoch, lr) and history: identical bit for bit."""
    for name in ("model.safetensors",):
        a, b = load_file(expected / name), load_file(actual / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    a, b = checkpoint_state(expected), checkpoint_state(actual)
    assert a.tensors.keys() == b.tensors.keys()
    assert any(k.startswith("ema.") for k in a.tensors) and any(k.startswith("optimizer.") for k in a.tensors)
    for key in a.tensors:  # model.*, ema.*, optimizer.* (momentum), rng.torch
        assert torch.equal(a.tensors[key], b.tensors[key]), f"checkpoint tensor {key} differs"
    for key in ("optimizer", "scaler", "rng_python"):  # lr and param groups, grad scaler, Python's RNG
        assert a.latest[key] == b.latest[key], f"checkpoint {key} differs"
    assert {**a.latest["config"], "out": None} == {**b.latest["config"], "out": None}
    assert without_timing(a.latest["progress"]) == without_timing(b.latest["progress"])
    assert a.latest["progress"]["step"] == STEPS_PER_EPOCH * EPOCHS
