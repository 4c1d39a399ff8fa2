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
    counts = [n_params(create_model(name, shortcut=option, device="meta")) for option in "ABC"]
    assert counts[0] < counts[1] < counts[2]
    for option in "ABC":  # training needs no full width: 1/8 of it, same shortcuts
        model = create_model(name, shortcut=option, width_multiplier=1 / 8)
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        assert all(p.grad is not None for p in model.parameters())


def test_option_a_adds_no_parameters_over_the_plain_net():
    assert n_params(create_model("resnet20", device="meta")) == n_params(
        create_model("plain20", device="meta")
    )
    assert n_params(create_model("resnet18", shortcut="A", device="meta")) == n_params(
        create_model("plain18", device="meta")
    )


def test_option_b_projects_only_where_the_shape_changes():
    model = create_model("resnet34", device="meta")
    projections = [
        name for name, m in model.named_modules() if name.endswith("downsample") and len(list(m.parameters()))
    ]
    assert projections == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]


def test_option_c_projects_in_every_block():
    model = create_model("resnet20", shortcut="C", device="meta")
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
    assert count_additions(create_model(plain, device="meta")) == 0
    resnet_model = create_model(resnet, device="meta")
    assert count_additions(resnet_model) == sum(resnet_model.spec.depths)


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
    model = create_model("resnet50", zero_init_residual=True, width_multiplier=1 / 8).eval()
    block = model.layer1[1]
    x = torch.relu(torch.randn(1, block.conv1.in_channels, 16, 16))
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)
    preact = create_model("preact_resnet20", zero_init_residual=True).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(preact.layer1[1](x), x)
