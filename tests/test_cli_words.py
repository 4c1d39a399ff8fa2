"""What the command line says when it is used wrongly or cut short: the subcommand that did not
know a flag and the flag it does know, flag names instead of config fields, a closed pipe that
is no error."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import resnets


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["train", "--batch-sise", "3"],
            "resnets train: error: unrecognized arguments: --batch-sise 3; did you mean --batch-size?",
        ),
        (["eval", "run", "--topk", "3"], "resnets eval: error: unrecognized arguments: --topk 3"),
        (
            ["predict", "w", "x.png", "--tpok=3"],
            "resnets predict: error: unrecognized argument: --tpok=3; did you mean --topk?",
        ),
        (
            ["train", "--lr-bakbone", "0.1", "--frezee", "stem"],
            "resnets train: error: unrecognized arguments: --lr-bakbone 0.1 --frezee stem; "
            "did you mean --lr-backbone for --lr-bakbone, --freeze for --frezee?",
        ),
    ],
)
def test_an_unknown_flag_names_its_subcommand_and_the_nearest_flag(args, expected, run_cli):
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    assert err == f"{expected} (see 'resnets {args[0]} --help')\n"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--accum-steps", "0"], "--accum-steps must be >= 1, got 0"),
        (["--epochs", "0"], "set --epochs > 0 or --iterations"),
        (["--schedule", "linear"], "--schedule must be one of step, cosine, constant, got 'linear'"),
        (["--compile-mode", "max-autotune"], "--compile-mode chooses how to compile; it needs --compile"),
        (["--reset-head"], "--reset-head needs weights to start from (--weights PATH)"),
        (["--lr-backbone", "0"], "--lr-backbone must be > 0, got 0.0 (freeze with --freeze instead)"),
        (["--workers", "-1"], "--workers must be >= 0, got -1"),
    ],
)
def test_config_errors_name_the_flag_to_change(flags, message, run_cli):
    code, _, err = run_cli("train", *flags, "--print-config")
    assert (code, err) == (2, f"resnets train: error: {message}\n")


def test_a_reader_that_stops_early_is_no_error():
    """`resnets train --print-config | head -1`: the pipe closes before the output is written."""
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, "-m", "resnets", "train", "--print-config"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # long before the process has imported torch and printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err  # 128 + SIGPIPE, as `cat` killed by the pipe
    assert err == ""


def test_make_says_what_it_is_doing_before_the_quiet_installs(tmp_path):
    """`make run` on a fresh clone: one line first, then pip's quiet minute (a dry run here)."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(resnets.__file__).resolve().parents[2]
    dry = subprocess.run(
        ["make", "-n", "-C", str(root), "setup", f"VENV={tmp_path / 'venv'}"], capture_output=True, text=True
    )
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if not line.startswith("make")]
    assert commands[0].startswith("echo ") and "installing torch" in commands[0]
    assert "pip install --quiet" in "\n".join(commands[1:])
