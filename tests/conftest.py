"""Shared test settings (deterministic, few threads: CI has 2 cores) and the one in-process runner
of the command line, `run_cli`."""

import contextlib
import io
from typing import NamedTuple

import pytest
import torch

from resnets.cli import main

torch.manual_seed(0)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


class CliResult(NamedTuple):
    """What `resnets ARGS` did: its exit code and everything it printed."""

    code: int
    out: str
    err: str


def _run_cli(*args: object) -> CliResult:
    """`resnets ARGS` in this process (fast): main() as the entry point calls it, with argparse's
    own exits (usage errors, --help) turned into their exit codes and stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:
            code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def run_cli():
    """The command line in-process: `run_cli("predict", weights, folder, "--json")` returns
    CliResult(code, out, err); arguments may be paths or numbers. For a command that must really
    die (kill -9, a crash), run `python -m resnets` as a subprocess instead."""
    return _run_cli
