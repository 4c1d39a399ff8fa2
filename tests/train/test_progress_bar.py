"""On a terminal, `resnets train` shows a progress bar per epoch with loss, accuracy, img/s and ETA
(on stderr, so stdout keeps the table); off a terminal (logs, CI) it shows none."""

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
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.Popen(
        [sys.executable, "-m", "resnets", "train", *ARGS, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )


def test_a_terminal_sees_a_bar_per_epoch_with_loss_accuracy_speed_and_eta(tmp_path):
    terminal, screen = os.openpty()
    fcntl.ioctl(screen, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    proc = train_with_stderr_on(screen, tmp_path / "run")
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
    assert proc.returncode == 0
    text = shown.decode(errors="replace")
    assert "epoch 1/2" in text and "epoch 2/2" in text
    assert re.search(r"loss=\d+\.\d{4} acc=\d+\.\d% img/s=\d+ eta=\d+:\d\d", text), text[-500:]
    assert b"epoch 1/2:" not in stdout  # the table is on stdout, the bar is not


def test_no_terminal_no_bar(tmp_path):
    proc = train_with_stderr_on(subprocess.PIPE, tmp_path / "run")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"epoch 1/2:" not in stderr and b"eta=" not in stderr
