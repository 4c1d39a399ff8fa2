"""Promise 5: running out of memory at the requested batch size says which batch size fits, and
--auto-batch-size finds it before training. The out-of-memory error is faked on CPU by a forward
that fails above a batch-size threshold, as a GPU's memory would."""

import json

import pytest
import torch
from reliability_runs import TINY

from resnets.models.resnet import ResNet
from resnets.train.guards import search_batch_size

LIMIT = 11  # the largest batch our fake device holds


@pytest.fixture
def small_memory(monkeypatch):
    real = ResNet.forward
    tried = []

    def forward(self, x):
        tried.append(len(x))
        if len(x) > LIMIT:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x)} MiB")
        return real(self, x)

    monkeypatch.setattr(ResNet, "forward", forward)
    return tried


def test_out_of_memory_names_the_largest_batch_that_fits(tmp_path, small_memory, run_cli):
    code, _, err = run_cli("train", *TINY, "--batch-size", "32", "--out", tmp_path / "run")
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == (
        "resnets train: error: out of memory at batch size 32; the largest batch that fits is 11: "
        "rerun with --batch-size 11 or --auto-batch-size"
    )
    assert max(small_memory) == 32 and LIMIT in small_memory and LIMIT + 1 in small_memory


def test_auto_batch_size_trains_with_the_largest_batch_that_fits(tmp_path, small_memory, run_cli):
    run = tmp_path / "run"
    code, _, err = run_cli(
        "train", *TINY, "--batch-size", "32", "--auto-batch-size", "--epochs", "1", "--out", run
    )
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["config"]["batch_size"] == LIMIT
    assert json.loads((run / "summary.json").read_text())["steps"] == 96 // LIMIT


@pytest.mark.parametrize("limit", [0, 1, 5, 16, 17, 31, 32, 100])
def test_batch_size_search_finds_the_exact_largest_that_fits(limit):
    calls = []

    def fits(b):
        calls.append(b)
        return b <= limit

    assert search_batch_size(fits, 32) == min(limit, 32)
    assert len(calls) <= 12  # halving then bisection: logarithmic in the batch size
