"""The backbone API with timm's and torchvision's meaning, checked against them with the same
weights: timm's features_only resnet50 maps and FeatureInfo, timm's forward_intermediates and
prune_intermediate_layers, torchvision's dilated resnet50 (replace_stride_with_dilation) and
timm's dilated basic-block and ResNet-D networks (output_stride)."""

import json

import pytest
import torch
import torchvision
from safetensors import safe_open

from cifar_reference import randomize_bn_statistics
from resnets import ResNetSpec, create_model, save_weights
from resnets.errors import InputError, SpecError
from resnets.weights.load import load_model

timm = pytest.importorskip("timm")


def same_weights(theirs: torch.nn.Module, name: str, **kwargs) -> torch.nn.Module:
    """Ours, with `theirs`'s (randomised-BN) weights loaded strictly: every key and shape equal."""
    randomize_bn_statistics(theirs)
    ours = create_model(name, **kwargs).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours


def test_features_only_resnet50_gives_timms_maps_and_feature_info():
    torch.manual_seed(0)
    theirs = timm.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    ours = same_weights(theirs, "resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    info = ours.feature_info
    assert info.channels() == theirs.feature_info.channels() == [256, 512, 1024, 2048]
    assert info.reduction() == theirs.feature_info.reduction() == [4, 8, 16, 32]
    assert info.module_name() == theirs.feature_info.module_name() == ["layer1", "layer2", "layer3", "layer4"]
    assert info.get_dicts() == theirs.feature_info.get_dicts()
    assert len(info) == len(theirs.feature_info) == 5 and info[1] == theirs.feature_info[1]


@pytest.mark.parametrize(
    "name, kwargs",
    [("resnet18", {}), ("resnet50d", {"output_stride": 16}), ("resnet34", {"out_indices": (-2, -1)})],
)
def test_out_indices_take_the_levels_timm_takes(name, kwargs):
    theirs = timm.create_model(name, features_only=True, **kwargs)
    ours = create_model(name, features_only=True, device="meta", **kwargs)
    assert ours.feature_info.channels() == theirs.feature_info.channels()
    assert ours.feature_info.reduction() == theirs.feature_info.reduction()
    their_names = theirs.feature_info.module_name()
    assert ours.feature_info.module_name() == [n.replace("act1", "relu") for n in their_names]
    assert list(ours.state_dict()) == list(theirs.state_dict())  # the same modules kept, same names
    maps = ours(torch.empty(1, 3, 64, 64, device="meta"))
    assert [m.shape[1] for m in maps] == theirs.feature_info.channels()
    assert [64 // m.shape[-1] for m in maps] == theirs.feature_info.reduction()


def test_forward_intermediates_and_pruning_mean_what_they_mean_in_timm():
    torch.manual_seed(0)
    theirs = timm.create_model("resnet50").eval()
    ours = same_weights(theirs, "resnet50")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for kwargs in [{}, {"indices": 2}, {"indices": [0, -1]}, {"indices": [1, 2], "stop_early": True}]:
            final, maps = ours.forward_intermediates(x, **kwargs)
            their_final, their_maps = theirs.forward_intermediates(x, **kwargs)
            assert torch.equal(final, their_final)
            assert len(maps) == len(their_maps) and all(map(torch.equal, maps, their_maps))
        only = ours.forward_intermediates(x, indices=1, intermediates_only=True)
        assert isinstance(only, list) and torch.equal(only[0], ours.forward_features(x))
        assert ours.prune_intermediate_layers([1, 2]) == theirs.prune_intermediate_layers([1, 2])
        assert list(ours.state_dict()) == list(theirs.state_dict())  # layer3, layer4 and fc gone
        assert ours.num_features == theirs.num_features == 512
        assert torch.equal(ours(x), theirs(x))  # the layer2 map: no pooling, no classifier left
        assert ours.spec.num_classes == 0


def test_bad_levels_and_formats_are_one_line_errors():
    model = create_model("resnet20", device="meta")
    x = torch.empty(1, 3, 32, 32, device="meta")
    for indices in ([4], [-5], 5, 0, []):
        with pytest.raises(InputError, match="feature levels|last .* feature levels"):
            model.forward_intermediates(x, indices=indices)
    with pytest.raises(InputError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(SpecError, match="features_only"):
        create_model("resnet20", out_indices=(1, 2))


def test_a_preactivation_nets_norm_applies_the_final_bn_relu_to_the_last_map():
    """timm's ResNetV2 (pre-activation): `norm` applies the final norm to the last stage's map."""
    model = randomize_bn_statistics(create_model("preact_resnet20"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        raw, normed = (
            model.forward_intermediates(x, indices=1, norm=n, intermediates_only=True)[0] for n in (0, 1)
        )
        assert torch.equal(normed, model.forward_features(x))
        assert torch.equal(normed, torch.relu(model.final_bn(raw)))
        assert not torch.equal(raw, normed)


@pytest.mark.parametrize("output_stride, dilate", [(8, [False, True, True]), (16, [False, False, True])])
def test_output_stride_gives_torchvisions_dilated_resnet50(output_stride, dilate):
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=dilate).eval()
    ours = same_weights(theirs, "resnet50", output_stride=output_stride)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
        assert ours.forward_features(x).shape[-1] == 64 // output_stride
    assert ours.feature_info[-1]["reduction"] == ours.min_input_size == output_stride


@pytest.mark.parametrize("name", ["resnet18", "resnet34d"])
def test_output_stride_dilates_basic_blocks_and_resnet_d_as_timm(name):
    """torchvision's BasicBlock refuses dilation; timm's dilates both its 3x3s (the first block's
    first by the previous stage's dilation) and averages ResNet-D's shortcut without striding."""
    torch.manual_seed(0)
    theirs = timm.create_model(name, output_stride=8).eval()
    ours = same_weights(theirs, name, output_stride=8)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    for key in ("num_chs", "reduction"):
        assert [d[key] for d in ours.feature_info] == [d[key] for d in theirs.feature_info]


def test_the_output_stride_is_recorded_with_the_weights(tmp_path):
    model = randomize_bn_statistics(create_model("resnet18", output_stride=16, num_classes=5))
    path = save_weights(model, tmp_path / "dilated.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["resnets.spec"])["output_stride"] == 16
    loaded, _ = load_model(path)
    assert loaded.spec.output_stride == 16 and loaded.spec.stage_dilations == (1, 1, 1, 2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_output_strides_the_stages_cannot_give_are_refused():
    with pytest.raises(SpecError, match="one of 4, 8, 16, 32"):
        create_model("resnet50", output_stride=12, device="meta")
    with pytest.raises(SpecError, match="one of 1, 2, 4"):
        create_model("resnet20", output_stride=8, device="meta")
    undilated = create_model("resnet50", output_stride=32, device="meta").spec
    assert undilated == ResNetSpec.from_dict(create_model("resnet50", device="meta").spec.to_dict())
