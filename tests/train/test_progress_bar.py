"""On a terminal, `resnets train` shows a progress bar per epoch with loss, accuracy, img/s and ETA,
and one over each evaluation (on stderr, so stdout keeps the table); `resnets eval` shows one
over its batches; off a terminal (logs, CI) neither shows any."""

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import resnets

ARGS = ["--model", "basic:1-1-1:4-8-16", "--data", "synthetic", "--synthetic-count", "320"]
ARGS += ["--synthetic-classes", "4", "--input-size", "8", "--batch-size", "16", "--epochs", "2"]


def train_with_stderr_on(stderr, out: Path) -> subprocess.Popen:
    return resnets_with_stderr_on(stderr, "train", *ARGS, "--out", str(out))


def resnets_with_stderr_on(stderr, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, "-m", "resnets", *args], stdout=subprocess.PIPE, stderr=stderr, env=env
    )


def on_a_terminal(*args: str) -> tuple[int, str, bytes]:
    """Run `resnets ARGS` with stderr on a pseudo-terminal: (exit code, what the terminal showed,
    stdout)."""
    terminal, screen = os.openpty()
    fcntl.ioctl(screen, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    proc = resnets_with_stderr_on(screen, *args)
    os.close(screen)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = proc.communicate(timeout=300)
    os.close(terminal)
    return proc.returncode, shown.decode(errors="replace"), stdout


def test_a_terminal_sees_a_bar_per_epoch_with_loss_accuracy_speed_and_eta(tmp_path):
    code, text, stdout = on_a_terminal("train", *ARGS, "--out", str(tmp_path / "run"))
    assert code == 0
    assert "epoch 1/2" in text and "epoch 2/2" in text
    assert "eval 1/2" in text and "eval 2/2" in text  # the evaluation after each epoch
    assert re.search(r"loss=\d+\.\d{4} acc=\d+\.\d% img/s=\d+ eta=\d+:\d\d", text), text[-500:]
    assert b"epoch 1/2:" not in stdout  # the table is on stdout, the bar is not

    # `resnets eval` counts its batches on the terminal too, and not in a pipe.
    code, text, _ = on_a_terminal("eval", str(tmp_path / "run"), "--batch-size", "8", "--device", "cpu")
    assert code == 0 and re.search(r"eval: +\d+%.*\| *\d+/8 ", text), text[-500:]
    proc = resnets_with_stderr_on(subprocess.PIPE, "eval", str(tmp_path / "run"), "--batch-size", "8")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"eval:" not in stderr


def test_no_terminal_no_bar(tmp_path):
    proc = train_with_stderr_on(subprocess.PIPE, tmp_path / "run")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"epoch 1/2:" not in stderr and b"eta=" not in stderr
    assert b"eval 1/2" not in stderr
