"""Promises 12 and 13: every command of the CLI, given a missing path, an unwritable --out, or flags
that cannot work together, exits with code 2 and one line on stderr, and writes nothing.

The commands come from the parser itself, so a new command is covered as soon as it exists: its
path arguments get the missing-path case automatically; its --out and contradictory-flag cases
need known-good arguments in GOOD_ARGS and CONTRADICTORY (the test says so when they are missing).
"""

import argparse
import os
import re
from pathlib import Path

import pytest
import torch
from reliability_runs import TINY

from resnets.cli import build_parser

NOWHERE = "/nonexistent/resnets-test/missing"


def commands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


PATHISH = ("path", "file", "dir", "weights", "image", "input", "checkpoint", "run", "src", "source")


def path_arguments(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """(positionals that name files, options that take a file or folder)."""
    positionals, options = [], []
    for action in parser._actions:
        name = f"{action.dest} {action.metavar or ''}".lower()
        if not action.option_strings and any(word in name for word in PATHISH):
            positionals.append(action.dest)
        elif action.option_strings and action.dest in (
            "data",
            "config",
            "resume",
            "weights",
            "input",
            "classes",
        ):
            options.append(action.option_strings[-1])
    return positionals, options


def good_args(tmp_root: Path, reference_run: Path) -> dict[str, list[str]]:
    """Arguments with which each command would run (so only the injected fault can fail it)."""
    return {
        "train": [*TINY, "--epochs", "1"],
        "eval": [str(reference_run)],
        "predict": [str(reference_run), str(an_image(tmp_root))],
        "explain": [str(reference_run), str(an_image(tmp_root))],
        "export": [str(reference_run), "--format", "onnx"],
        "convert": [str(reference_run / "model.safetensors")],
        "reproduce": ["table6", "--depths", "20", "--iterations", "1", "--device", "cpu"],
    }


def an_image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "digit.png"
    if not path.exists():
        Image.new("RGB", (16, 16), (200, 10, 10)).save(path)
    return path


CUDA = torch.cuda.is_available()
CONTRADICTORY: dict[str, list[list[str]]] = {
    "list": [],  # no paths, no --out, one flag
    "summary": [["resnet50", "--input-size", "16"], ["resnet20", "--width-multiplier", "0"]],
    "train": [
        ["--resume", "{run}", "--lr", "0.5"],
        [*TINY, "--precision", "fp16", "--device", "cpu"],
        [*TINY, "--iterations", "0"],
        [*TINY, "--max-restarts", "2"],  # restarts are torchrun's: they need --nproc-per-node
    ],
    "eval": [] if CUDA else [["{run}", "--device", "cuda"]],
    "bench": [
        ["--model", "resnet20", "--no-compile", "--compile-mode", "reduce-overhead"],
        ["--model", "resnet20", "--steps", "0"],
        ["--model", "resnet20", "--compare", "nothing"],
    ],
    "predict": [["{run}", "{run}", "--topk", "0"], ["{run}", "{run}", "--batch-size", "0"]],
    "explain": [["{run}", "{run}", "--class", "no-such-class"], ["{run}", "{run}", "--layer", "layer9"]],
    "export": [
        ["{run}", "--format", "safetensors", "--fold-bn"],
        ["{run}", "--format", "onnx", "--precision", "bf16"],
        ["{run}", "--format", "torchscript", "--opset", "17"],
        ["{run}", "--format", "onnx", "--opset", "9"],  # option A's strided slice needs opset 10
        ["{run}", "--format", "torchscript", "--int8"],
    ],
    "convert": [
        ["{run}/model.safetensors", "--out", "{run}/model.safetensors"],
        ["{run}/model.safetensors", "--out", "weights.pt"],
    ],
    "reproduce": [
        ["fig1", "--depths", "1202"],  # no plain-1202
        ["table6", "--seeds", "0"],
        ["table6", "--scale", "huge"],
    ],
    "analyze": [
        ["responses", "{run}", "--batch-size", "0"],
        ["responses", NOWHERE],
        ["responses", "{run}", "--out", "{run}/model.safetensors/x"],  # --out under a file
        ["responses", "{run}", "--data", NOWHERE],
    ],
}


def cases():
    for name, parser in commands().items():
        positionals, options = path_arguments(parser)
        for dest in positionals:
            yield pytest.param(name, "missing path", dest, id=f"{name}-missing-{dest}")
        for option in options:
            yield pytest.param(name, "missing path", option, id=f"{name}-missing{option}")
        if any("--out" in a.option_strings for a in parser._actions):
            yield pytest.param(name, "unwritable --out", None, id=f"{name}-unwritable-out")
        for i in range(len(CONTRADICTORY.get(name, [None]))):
            yield pytest.param(name, "contradictory", i, id=f"{name}-contradictory-{i}")


def files_under(*roots: Path) -> set[str]:
    return {str(p) for root in roots for p in root.rglob("*")}


@pytest.mark.parametrize("command, fault, which", list(cases()))
def test_every_command_fails_in_one_line_with_exit_2_and_writes_nothing(
    command, fault, which, tmp_path, monkeypatch, reference_run, run_cli
):
    monkeypatch.chdir(tmp_path)  # default run directories and outputs would land here
    parser = commands()[command]
    positionals, _ = path_arguments(parser)
    known = good_args(tmp_path, reference_run)
    if fault == "missing path":
        if which.startswith("--"):
            args = [*known.get(command, []), which, NOWHERE]
        else:
            args = [NOWHERE if dest == which else "x" for dest in positionals]
    elif fault == "unwritable --out":
        if command not in known:
            pytest.fail(f"add arguments that make '{command}' work to good_args() in this test")
        blocker = tmp_path / "a-file"
        blocker.write_text("a file where a folder should be")
        args = [*known[command], "--out", str(blocker / "out")]
    else:
        if command not in CONTRADICTORY:
            pytest.fail(f"add contradictory-flag cases for '{command}' to CONTRADICTORY in this test")
        args = [a.replace("{run}", str(reference_run)) for a in CONTRADICTORY[command][which]]
    before = files_under(tmp_path, reference_run)
    code, _, err = run_cli(command, *args)
    assert code == 2, f"{command} {args}: exit {code}\n{err[-2000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{command} {args}:\n{err[-2000:]}"
    assert re.match(rf"resnets {command}( [a-z]+)?: error: ", lines[0]), lines[0]  # a subcommand's own too
    assert files_under(tmp_path, reference_run) == before, "something was written"
    assert not any(".tmp-" in name for name in os.listdir(tmp_path))
