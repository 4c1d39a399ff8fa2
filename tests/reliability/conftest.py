"""Fixtures of the reliability suite: global state restored after every test, and one tiny
deterministic CPU run, trained once per session as the uninterrupted reference."""

from pathlib import Path

import pytest
import torch
from reliability_runs import TINY


@pytest.fixture(autouse=True)
def clean_global_state():
    """Each in-process run sets threads and deterministic mode: undo them."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, run_cli) -> Path:
    """The uninterrupted run every interrupted one must end up identical to."""
    run = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    try:
        code, _, err = run_cli("train", *TINY, "--out", run)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)
    assert code == 0, err
    return run
