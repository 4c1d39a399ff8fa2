"""Shortcut options A/B/C (paper sec. 3.3) and the plain baselines, checked on the modules' behaviour."""

import operator

import pytest
import torch
from torch import nn

from resnets import create_model
from resnets.models.blocks import ZeroPadShortcut


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50"])
def test_options_a_b_c_add_parameters_in_that_order_and_all_train(name):
    counts = []
    for option in "ABC":
        model = create_model(name, shortcut=option)
        counts.append(n_params(model))
        x = torch.randn(2, 3, 32, 32)
        model(x).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
    assert counts[0] < counts[1] < counts[2]


def test_option_a_adds_no_parameters_over_the_plain_net():
    assert n_params(create_model("resnet20")) == n_params(create_model("plain20"))
    assert n_params(create_model("resnet18", shortcut="A")) == n_params(create_model("plain18"))


def test_option_b_projects_only_where_the_shape_changes():
    model = create_model("resnet34")
    projections = [
        name for name, m in model.named_modules() if name.endswith("downsample") and len(list(m.parameters()))
    ]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]


def test_option_c_projects_in_every_block():
    model = create_model("resnet20", shortcut="C")
    blocks = [b for stage in model.stages for b in stage]
    assert all(isinstance(b.downsample, nn.Sequential) for b in blocks)


def test_option_a_subsamples_and_zero_pads_around_the_input_channels():
    x = torch.randn(2, 16, 9, 9)
    y = ZeroPadShortcut(16, 32, stride=2)(x)
    assert y.shape == (2, 32, 5, 5)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def count_additions(model: nn.Module) -> int:
    """Residual additions seen by tracing each block's forward (not by reading module names)."""
    total = 0
    for stage in model.stages:
        for block in stage:
            graph = torch.fx.symbolic_trace(block).graph
            total += sum(
                1
                for node in graph.nodes
                if node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add)
            )
    return total


@pytest.mark.parametrize(
    "plain, resnet", [("plain20", "resnet20"), ("plain18", "resnet18"), ("plain110", "resnet110")]
)
def test_plain_twins_have_no_residual_additions(plain, resnet):
    assert count_additions(create_model(plain)) == 0
    assert count_additions(create_model(resnet)) == sum(create_model(resnet).spec.depths)


def test_plain_block_output_is_its_last_layer_only_by_hooking():
    """In a plain net each block's output is ReLU(last BN); in a ResNet it is not."""
    for name, expect_plain in [("plain20", True), ("resnet20", False)]:
        model = create_model(name).eval()
        seen = []
        for stage in model.stages:
            for block in stage:
                last = {}
                block.bn2.register_forward_hook(lambda m, i, o, last=last: last.update(out=o.clone()))
                block.register_forward_hook(
                    lambda m, i, o, last=last, seen=seen: seen.append(torch.equal(o, torch.relu(last["out"])))
                )
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        assert all(seen) if expect_plain else not any(seen)


def test_zero_init_residual_makes_every_block_start_as_its_shortcut():
    model = create_model("resnet50", zero_init_residual=True).eval()
    block = model.layer1[1]
    x = torch.relu(torch.randn(1, 256, 16, 16))
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
    preact = create_model("preact_resnet20", zero_init_residual=True).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(preact.layer1[1](x), x)


def test_drop_path_rises_linearly_and_only_acts_in_training():
    model = create_model("resnet20", drop_path_rate=0.2)
    rates = [b.drop_path.p if hasattr(b.drop_path, "p") else 0.0 for s in model.stages for b in s]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert all(a <= b for a, b in zip(rates, rates[1:]))
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
