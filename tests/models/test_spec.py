"""ResNetSpec as stored data, and the constructor arguments of the modules built from it."""

import inspect

import pytest
import torch

from resnets import ResNet, ResNetSpec, create_model
from resnets.errors import SpecError
from resnets.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from resnets.models.zoo import ZOO


def test_a_spec_round_trips_through_its_dict():
    spec = ZOO["resnext50_32x4d"].spec.replace(width_multiplier=0.5, drop_path_rate=0.1)
    assert ResNetSpec.from_dict(spec.to_dict()) == spec


def test_specs_stored_before_the_multiplier_was_renamed_still_read():
    """Weights files written with the field called "width" keep loading, with the same network."""
    stored = ZOO["resnet20"].spec.to_dict()
    del stored["width_multiplier"]
    stored["width"] = 2.0
    spec = ResNetSpec.from_dict(stored)
    assert spec.width_multiplier == 2.0 and spec.stage_widths == (32, 64, 128)
    both = {**stored, "width_multiplier": 2.0}
    with pytest.raises(SpecError, match="both 'width' and 'width_multiplier'"):
        ResNetSpec.from_dict(both)
    with pytest.raises(SpecError, match="unknown spec field"):
        ResNetSpec.from_dict({**ZOO["resnet20"].spec.to_dict(), "depth": 20})


def test_the_width_multiplier_scales_every_stage_and_the_deep_stem():
    model = create_model("resnet50d", width_multiplier=0.5, device="meta")
    assert model.conv1[0].out_channels == 16 and model.conv1[6].out_channels == 32  # stem 32, 64 halved
    assert [s[0].conv3.out_channels for s in model.stages] == [128, 256, 512, 1024]
    with pytest.raises(SpecError, match="width_multiplier must be > 0"):
        create_model("resnet20", width_multiplier=0)


def test_the_name_is_given_at_construction():
    spec = ZOO["resnet18"].spec
    with torch.device("meta"):
        assert ResNet(spec).name == "custom"
        assert ResNet(spec, name="resnet18").name == "resnet18"
    assert create_model("resnet18", device="meta").name == "resnet18"
    assert create_model("basic:2-2-2-2", device="meta").name == "basic:2-2-2-2"
    assert create_model(spec, device="meta").name == "custom"
    assert create_model(spec, name="mine", device="meta").name == "mine"


def test_each_block_takes_only_the_arguments_it_uses():
    common = ["self", "in_channels", "width", "stride", "shortcut", "drop_path_rate"]
    basic = [*common, "dilation", "first_dilation"]
    bottleneck = [*common, "stride_on", "inner_width", "groups", "dilation"]
    for block, expected in [
        (BasicBlock, basic),
        (PreActBasicBlock, [*basic, "shortcut_from_preact"]),
        (Bottleneck, bottleneck),
        (PreActBottleneck, [*bottleneck, "shortcut_from_preact"]),
    ]:
        assert list(inspect.signature(block.__init__).parameters) == expected, block.__name__
    with pytest.raises(TypeError):
        BasicBlock(16, 16, 1, None, groups=4)
