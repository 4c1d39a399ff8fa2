"""Pre-activation networks as He et al. 2016 describe them and the authors' code builds them
(github.com/KaimingHe/resnet-1k-layers, resnet-pre-act.lua; fb.resnet.torch's preresnet.lua):

- the first unit of each stage shares its BN-ReLU between both paths, so its shortcut reads the
  activated input (the appendix: "the first activation right after conv1 and before splitting
  into two paths"); every other unit's shortcut reads the raw input;
- a projection shortcut is a bare 1x1 conv (no BN);
- ResNet-164/1001: 9n+2 layers of bottleneck units on 16-64-128-256 channels, the stride on the
  first 1x1, n = 18 / 111;
- the parameter counts of Table 2 (1.7M, 1.7M, 10.2M), computed here from that description.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from cifar_reference import randomize_bn_statistics
from narrow_models import narrow
from resnets import create_model, list_models, summary

PREACT = [name for name in list_models() if name.startswith("preact_")]


def table2_architecture(block: str, n: int) -> tuple[int, int]:
    """(weights of the convs and the fc, BN scales and shifts) of the CIFAR network of He et al.
    2016, counted from its description: a 3x3 conv to 16 channels; three stages of n units with
    outputs 16/32/64 (basic: [3x3, w; 3x3, w]) or 64/128/256 (bottleneck: [1x1, w/4; 3x3, w/4;
    1x1, w]); a BN-ReLU before every conv of a unit and after the last unit; a bare 1x1
    projection where a unit changes the channels; a 10-way fc with bias."""
    outs = (16, 32, 64) if block == "basic" else (64, 128, 256)
    weights, bn, cin = 3 * 16 * 3 * 3, 0, 16
    for out in outs:
        for _ in range(n):
            if block == "basic":
                weights += cin * out * 9 + out * out * 9
                bn += 2 * (cin + out)
            else:
                w = out // 4
                weights += cin * w + w * w * 9 + w * out
                bn += 2 * (cin + w + w)
            if cin != out:
                weights += cin * out
            cin = out
    bn += 2 * cin
    return weights + cin * 10 + 10, bn


@pytest.mark.parametrize(
    "name, block, n, table2_millions",
    [
        ("preact_resnet110", "basic", 18, 1.7),
        ("preact_resnet164", "bottleneck", 18, 1.7),
        ("preact_resnet1001", "bottleneck", 111, 10.2),
    ],
)
def test_parameter_counts_are_table2s(name, block, n, table2_millions):
    """Table 2 counts the weights of the convs and the fc: 10.2M for ResNet-1001 (with BN's two
    parameters per channel, 10.33M, which the paper would have written 10.3M)."""
    weights, bn = table2_architecture(block, n)
    assert round(weights / 1e6, 1) == table2_millions
    model = create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == weights + bn
    assert summary(name).params == weights + bn
    assert model.spec.num_layers == (6 if block == "basic" else 9) * n + 2


def what_each_shortcut_adds(model: nn.Module, x: torch.Tensor) -> list[dict]:
    """For every unit, by forward hooks: its input, its BN-ReLU (bn1 then ReLU), the residual
    branch's output (the last conv; drop path is off in eval mode) and the unit's output."""
    records, handles = [], []
    for stage in model.stages:
        for unit in stage:
            rec: dict = {"unit": unit}
            last = unit.conv3 if hasattr(unit, "conv3") else unit.conv2
            handles += [
                unit.bn1.register_forward_hook(lambda m, i, o, r=rec: r.update(pre=torch.relu(o))),
                last.register_forward_hook(lambda m, i, o, r=rec: r.update(branch=o.clone())),
                unit.register_forward_hook(lambda m, i, o, r=rec: r.update(input=i[0].clone(), output=o)),
            ]
            records.append(rec)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return records


@pytest.mark.parametrize(
    "name", ["preact_resnet20", "preact_resnet110", "preact_resnet18", "preact_resnet164"]
)
def test_the_first_unit_of_each_stage_feeds_its_shortcut_from_its_bn_relu(name):
    torch.manual_seed(0)
    model = randomize_bn_statistics(create_model(name, width_multiplier=0.25))
    size = 32 if model.spec.stem == "cifar" else 64
    records = what_each_shortcut_adds(model, torch.randn(2, 3, size, size))
    first_units = {id(stage[0]) for stage in model.stages}
    for rec in records:
        unit = rec["unit"]
        if id(unit) not in first_units:  # identity on the raw input
            shortcut = rec["input"]
        elif isinstance(unit.downsample, nn.Identity):  # the first unit after conv1 (basic blocks)
            shortcut = rec["pre"]
            assert not torch.allclose(rec["pre"], rec["input"], atol=1e-3)  # BN-ReLU changes it
        else:  # a bare 1x1 projection of the activated input
            conv = unit.downsample[0]
            shortcut = F.conv2d(rec["pre"], conv.weight, stride=conv.stride)
        torch.testing.assert_close(rec["output"], rec["branch"] + shortcut, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", PREACT)
def test_projection_shortcuts_of_preactivation_nets_are_a_bare_1x1_conv(name):
    model = create_model(name, device="meta")
    projections = [u.downsample for s in model.stages for u in s if not isinstance(u.downsample, nn.Identity)]
    assert projections  # every preact net in the zoo changes channels somewhere
    for shortcut in projections:
        assert [type(m) for m in shortcut] == [nn.Conv2d] and shortcut[0].kernel_size == (1, 1)
    keys = [k for k in model.state_dict() if ".downsample." in k]
    assert keys and all(k.endswith("downsample.0.weight") for k in keys)


def test_the_plain_networks_keep_a_bn_after_each_projection():
    """torchvision's layout (downsample.0 conv, downsample.1 BN) for every other network."""
    model = create_model("resnet50", device="meta")
    assert [type(m) for m in model.layer2[0].downsample] == [nn.Conv2d, nn.BatchNorm2d]


@pytest.mark.parametrize("name, n", [("preact_resnet164", 18), ("preact_resnet1001", 111)])
def test_resnet164_and_1001_are_built_as_resnet_pre_act_lua_builds_them(name, n):
    model = create_model(name, device="meta")
    assert [len(stage) for stage in model.stages] == [n, n, n]
    assert model.conv1.out_channels == 16 and model.spec.out_channels == (64, 128, 256)
    assert isinstance(model.bn1, nn.Identity) and model.final_bn.num_features == 256
    for stage, stride in zip(model.stages, (1, 2, 2)):
        first = stage[0]
        assert first.conv1.stride == (stride, stride) and first.conv2.stride == (1, 1)  # on the 1x1
        assert first.downsample[0].stride == (stride, stride)
    sizes = []
    small = narrow("preact_resnet164")
    hooks = [
        s[0].conv1.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for s in small.stages
    ]
    small.eval()(torch.randn(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert sizes == [32, 16, 8]


def test_resnet1001_trains_from_the_command_line(run_cli, tmp_path):
    code, out, err = run_cli(
        "train", "--model", "preact_resnet1001", "--width-multiplier", "0.0625",
        "--data", "synthetic", "--synthetic-count", "48", "--synthetic-classes", "2",
        "--input-size", "8", "--batch-size", "16", "--iterations", "1",
        "--out", tmp_path / "run", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["model"] == "preact_resnet1001"
    with safe_open(str(tmp_path / "run" / "model.safetensors"), framework="pt") as f:
        spec = json.loads(f.metadata()["resnets.spec"])
        assert spec["depths"] == [111, 111, 111] and spec["preact"] and spec["stride_on"] == "1x1"
        assert f.get_tensor("layer3.110.conv3.weight").shape == (16, 4, 1, 1)
