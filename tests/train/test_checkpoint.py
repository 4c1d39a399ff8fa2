"""Checkpoint files: optimizer state survives the safetensors + JSON split; saving is atomic."""

import json

import torch

from resnets.train.checkpoint import join_tensors, load_checkpoint, save_checkpoint, split_tensors


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    for opt in (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        torch.optim.AdamW(model.parameters()),
    ):
        model(torch.randn(5, 3)).sum().backward()
        opt.step()
        tensors: dict = {}
        skeleton = split_tensors(opt.state_dict(), "optimizer", tensors)
        json.dumps(skeleton)  # JSON all the way down
        save_checkpoint(tmp_path, 1, tensors, {"optimizer": skeleton})
        loaded, state = load_checkpoint(tmp_path)
        restored = join_tensors(state["optimizer"], loaded)
        fresh = type(opt)(model.parameters(), lr=1.0)
        fresh.load_state_dict(restored)
        for key, value in opt.state_dict()["state"].items():
            for name, t in value.items():
                assert torch.equal(fresh.state_dict()["state"][key][name], t)
        assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_a_new_checkpoint_replaces_the_old_and_latest_json_names_it(tmp_path):
    save_checkpoint(tmp_path, 1, {"w": torch.zeros(2)}, {"step": 1})
    save_checkpoint(tmp_path, 2, {"w": torch.ones(2)}, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.safetensors", "latest.json"]
    tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 2 and torch.equal(tensors["w"], torch.ones(2))
