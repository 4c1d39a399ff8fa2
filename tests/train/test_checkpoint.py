"""Checkpoint files: optimizer state survives the safetensors + JSON split; saving is atomic."""

import copy
import json

import pytest
import torch

from resnets.train.checkpoint import load_checkpoint, prefixed, save_checkpoint
from resnets.train.config import TrainConfig
from resnets.train.state import load_optimizer_state, optimizer_state
from resnets.train.step import build_optimizer, set_lr


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path, kind):
    """The oracle: the optimizer that was saved. A fresh one loaded from the files holds the same
    state and takes the same next step, bit for bit; the JSON holds no tensor."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    twin = copy.deepcopy(model)
    config = TrainConfig(optimizer=kind, decay_norm_and_bias=False)  # two param groups
    opt = build_optimizer(model, config)
    for _ in range(2):
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
    tensors, values = optimizer_state(model, opt)
    assert tensors and all(isinstance(k, str) and "." in k for k in tensors)  # keyed by parameter name
    json.dumps(values)  # JSON all the way down
    save_checkpoint(tmp_path, 1, {f"optimizer.{k}": v for k, v in tensors.items()}, {"optimizer": values})
    loaded, state = load_checkpoint(tmp_path)
    twin.load_state_dict(model.state_dict())
    fresh = build_optimizer(twin, config.replace(lr=1.0))
    load_optimizer_state(twin, fresh, prefixed(loaded, "optimizer"), state["optimizer"])
    saved, restored = opt.state_dict(), fresh.state_dict()
    without_lr = [
        [{k: v for k, v in g.items() if k != "lr"} for g in d["param_groups"]] for d in (saved, restored)
    ]
    assert without_lr[0] == without_lr[1]
    assert [g["lr"] for g in restored["param_groups"]] == [1.0, 1.0]  # its own: the schedule sets it
    for key, value in saved["state"].items():
        for name, t in value.items():
            assert torch.equal(restored["state"][key][name], t), (key, name)
    set_lr(fresh, 0.1)
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (twin, fresh)):
        m(x).sum().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


def test_a_restored_optimizer_keeps_its_own_tensor_learning_rate():
    """A CUDA-graph step reads the learning rate from tensors captured once: a resume must not
    replace them (the schedule fills them every step)."""
    model = torch.nn.Linear(3, 2)
    config = TrainConfig()
    opt = build_optimizer(model, config)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, values = optimizer_state(model, opt)
    graphed = build_optimizer(model, config, tensor_lr=True)
    rates = [g["lr"] for g in graphed.param_groups]
    load_optimizer_state(model, graphed, tensors, values)
    assert all(g["lr"] is rate for g, rate in zip(graphed.param_groups, rates))
    assert torch.equal(
        graphed.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"]
    )


def test_a_new_checkpoint_replaces_the_old_and_latest_json_names_it(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {"step": 1})
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.safetensors", "latest.json"]
    tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 2 and torch.equal(tensors["w"], torch.ones(2))


def test_only_checkpoint_files_are_ever_deleted_from_the_folder(tmp_path):
    """An export of a stopped run's weights lands next to them (epoch-0001-folded.safetensors):
    replacing the checkpoint must not take it along."""
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {"step": 1})
    for name in ("epoch-0001-folded.safetensors", "mine.safetensors", "epoch-0001.onnx"):
        (tmp_path / name).write_bytes(b"someone's file")
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {"step": 2})
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {"step": 3}, mid_epoch_step=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-0001-folded.safetensors",
        "epoch-0001.onnx",
        "epoch-0002-step-00000030.safetensors",
        "latest.json",
        "mine.safetensors",
    ]
