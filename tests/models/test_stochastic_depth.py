"""Stochastic depth (Huang et al. 2016): in training each sample's residual branch is dropped
with the block's probability and kept ones are scaled by 1 / (1 - p); in eval mode the block is
the plain residual block."""

import pytest
import torch
from torch import nn

from resnets import create_model


def rates(model: nn.Module) -> list[float]:
    return [getattr(b.drop_path, "p", 0.0) for s in model.stages for b in s]


def test_drop_path_rises_linearly_from_zero_at_the_first_block_to_the_rate_at_the_last():
    model = create_model("resnet20", drop_path_rate=0.2, device="meta")
    n = sum(model.spec.depths)
    assert rates(model) == pytest.approx([0.2 * i / (n - 1) for i in range(n)])


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "preact_resnet56"])
def test_in_training_each_sample_either_drops_its_residual_branch_or_keeps_it_scaled(name):
    """Per sample (row of the batch), the block's output is its shortcut alone (dropped) or the
    shortcut plus the branch / (1 - p) (kept); with p = 0.5 and 64 samples both happen."""
    torch.manual_seed(0)
    model = create_model(name, drop_path_rate=0.5, width_multiplier=1 / 8).train()
    block = model.stages[-1][-1]  # the last block: p = drop_path_rate
    p = block.drop_path.p
    assert p == pytest.approx(0.5)
    end = block.branch_end()
    seen = {}
    end.register_forward_hook(lambda m, i, o: seen.update(branch=o.detach().clone()))
    x = torch.randn(64, block.conv1.in_channels, 4, 4)
    if not model.spec.preact:
        x = torch.relu(x)  # what a block receives after the previous block's ReLU
    with torch.no_grad():
        out = block(x)
    post = nn.Identity() if model.spec.preact else torch.relu  # preact blocks end on the sum
    dropped = post(x)  # identity shortcut: the input itself
    kept = post(x + seen["branch"] / (1 - p))
    is_dropped = torch.tensor([torch.equal(o, d) for o, d in zip(out, dropped)])
    is_kept = torch.tensor([torch.allclose(o, k, rtol=1e-5, atol=1e-6) for o, k in zip(out, kept)])
    assert (is_dropped | is_kept).all()
    assert is_dropped.any() and is_kept.any()
    assert not (is_dropped & is_kept).any()  # the branch is not zero, so the two differ


def test_in_eval_mode_drop_path_changes_nothing():
    torch.manual_seed(0)
    dropping = create_model("resnet20", drop_path_rate=0.5)
    plain = create_model("resnet20")
    plain.load_state_dict(dropping.state_dict())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dropping.eval()(x), plain.eval()(x))
        assert not torch.equal(dropping.train()(x), plain.train()(x))


def test_drop_path_adds_no_state():
    with_rate = create_model("resnet50", drop_path_rate=0.3, device="meta").state_dict()
    assert list(with_rate) == list(create_model("resnet50", device="meta").state_dict())
