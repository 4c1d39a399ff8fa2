"""Training options that change how a step runs, not what it computes: activation checkpointing
and bf16 autocast, through `resnets train` on CPU."""

import json

import pytest
import torch
from safetensors.torch import load_file

import resnets.models.resnet

TINY = [
    "--model", "basic:1-1-1:4-8-16",
    "--data", "synthetic",
    "--synthetic-count", "96",
    "--synthetic-classes", "4",
    "--input-size", "8",
    "--batch-size", "16",
    "--epochs", "1",
    "--deterministic",
    "--json",
]  # fmt: skip


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)


def test_checkpointed_activations_recompute_every_block_and_train_the_same_weights(
    tmp_path, deterministic, monkeypatch, run_cli
):
    assert run_cli("train", *TINY, "--out", tmp_path / "plain").code == 0
    calls = []
    real = resnets.models.resnet.checkpoint

    def counting(block, *args, **kwargs):
        calls.append(block)
        return real(block, *args, **kwargs)

    monkeypatch.setattr(resnets.models.resnet, "checkpoint", counting)
    result = run_cli("train", *TINY, "--checkpoint-activations", "--out", tmp_path / "ckpt")
    assert result.code == 0
    steps = json.loads(result.out)["steps"]
    assert len(calls) == 3 * steps > 0  # three blocks a step; evaluation (no grad) keeps activations
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    ckpt = load_file(tmp_path / "ckpt" / "model.safetensors")
    # Same arithmetic, recomputed: equal weights, and BN running statistics counted once.
    for key in plain:
        torch.testing.assert_close(ckpt[key], plain[key], rtol=1e-5, atol=1e-6, msg=key)


def test_bf16_training_on_cpu_runs_under_autocast_and_records_it(tmp_path, run_cli):
    result = run_cli("train", *TINY, "--out", tmp_path / "fp32")
    assert result.code == 0
    fp32 = json.loads(result.out)
    result = run_cli("train", *TINY, "--precision", "bf16", "--out", tmp_path / "bf16")
    assert result.code == 0
    bf16 = json.loads(result.out)
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())["config"]
    assert config["precision"] == "bf16"
    weights = load_file(tmp_path / "bf16" / "model.safetensors")
    floats = [w for w in weights.values() if w.is_floating_point()]
    assert floats and all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in floats)
    assert bf16["val_loss"] != fp32["val_loss"]  # the forward really ran in bf16


def test_compiled_training_follows_the_eager_run(tmp_path, monkeypatch, run_cli):
    import torch._dynamo

    assert run_cli("train", *TINY, "--out", tmp_path / "eager").code == 0
    torch._dynamo.reset()
    frames = torch._dynamo.utils.counters["stats"]
    before = frames["unique_graphs"]
    assert run_cli("train", *TINY, "--compile", "--out", tmp_path / "compiled").code == 0
    assert frames["unique_graphs"] > before  # dynamo really traced the network
    eager = load_file(tmp_path / "eager" / "model.safetensors")
    compiled = load_file(tmp_path / "compiled" / "model.safetensors")
    for key in eager:  # inductor reorders float sums: close, not bit-equal
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-3, atol=1e-4, msg=key)
