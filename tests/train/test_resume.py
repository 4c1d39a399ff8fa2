"""--resume continues a run exactly: bit-identical weights to an uninterrupted run on CPU."""

import csv

import pytest
import torch
from safetensors.torch import load_file

from resnets.train import resolve_recipe, train

TINY = dict(
    model="basic:1-1-1:4-8-16",
    data="synthetic",
    synthetic_count=96,
    synthetic_classes=4,
    input_size=8,
    batch_size=16,
    epochs=3,
    deterministic=True,
    # Everything that carries state across epochs: momentum, EMA, the global RNG (MixUp, drop path).
    ema_decay=0.9,
    mixup_alpha=0.4,
    drop_path_rate=0.2,
)


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)


def rows(path):
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}
        for r in csv.DictReader(path.open())
    ]


def test_resume_after_an_interruption_ends_bit_identical_to_an_uninterrupted_run(
    tmp_path, deterministic, run_cli
):
    config = resolve_recipe("default", **TINY)
    train(config, tmp_path / "whole")
    train(config, tmp_path / "split", stop_after_epoch=1)
    assert not (tmp_path / "split" / "model.safetensors").exists()
    assert run_cli("train", "--resume", tmp_path / "split").code == 0
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    split = load_file(tmp_path / "split" / "model.safetensors")
    assert whole.keys() == split.keys()
    for key in whole:
        assert torch.equal(whole[key], split[key]), key
    ckpt = [load_file(next((tmp_path / d / "checkpoint").glob("*.safetensors"))) for d in ("whole", "split")]
    assert all(torch.equal(ckpt[0][k], ckpt[1][k]) for k in ckpt[0])  # optimizer, EMA, RNG too
    assert rows(tmp_path / "whole" / "metrics.csv") == rows(tmp_path / "split" / "metrics.csv")


def test_resume_refuses_config_changes(tmp_path, run_cli):
    result = run_cli("train", "--resume", tmp_path, "--lr", "0.5")
    assert result.code == 2
    assert "drop --lr" in result.err
