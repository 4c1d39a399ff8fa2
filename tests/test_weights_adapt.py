"""RGB weights into a network with other input channels: the first convolution is adapted exactly
as timm's `adapt_input_conv` does (the oracle), said in one line; any other misfit is refused."""

import pytest
import torch
from timm.models._manipulate import adapt_input_conv as timm_adapt_input_conv

from resnets import create_model
from resnets.errors import WeightsError
from resnets.weights import load_model, load_weights
from resnets.weights.adapt import adapt_input_conv
from resnets.weights.format import save_weights

SMALL = dict(width_multiplier=0.25)  # the ImageNet layouts at a quarter of the width: quick to build


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 7])
def test_adapt_input_conv_equals_timms(channels):
    weight = torch.randn(64, 3, 7, 7)
    torch.testing.assert_close(
        adapt_input_conv(channels, weight), timm_adapt_input_conv(channels, weight.clone()), rtol=0, atol=0
    )
    half = weight.half()
    assert adapt_input_conv(channels, half).dtype == torch.float16
    torch.testing.assert_close(
        adapt_input_conv(channels, half), timm_adapt_input_conv(channels, half.clone())
    )


@pytest.mark.parametrize("model, key", [("resnet18", "conv1.weight"), ("resnet18d", "conv1.0.weight")])
@pytest.mark.parametrize("channels", [1, 4])
def test_rgb_weights_load_into_another_number_of_input_channels_with_the_stem_adapted(
    tmp_path, model, key, channels
):
    rgb = create_model(model, **SMALL)
    path = save_weights(rgb, tmp_path / "rgb.safetensors")
    target = create_model(model, in_channels=channels, **SMALL)
    meta = load_weights(target, path)
    expected = timm_adapt_input_conv(channels, rgb.state_dict()[key].clone())
    torch.testing.assert_close(target.state_dict()[key], expected, rtol=0, atol=0)
    assert torch.equal(target.layer2[0].conv1.weight, rgb.layer2[0].conv1.weight)  # the rest as it was
    assert meta.extra["adapted"].startswith(f"adapted {key} from 3 to {channels} input channel")
    # The Python API that builds from the file adapts too, when asked for other input channels.
    built, built_meta = load_model(path, in_channels=channels)  # its spec is read from the file
    torch.testing.assert_close(built.state_dict()[key], expected, rtol=0, atol=0)
    assert "adapted" in built_meta.extra


def test_a_gray_image_through_the_summed_stem_gives_the_rgb_response_to_the_gray_image_repeated(tmp_path):
    rgb = create_model("resnet18", **SMALL).eval()
    gray = create_model("resnet18", in_channels=1, **SMALL).eval()
    load_weights(gray, save_weights(rgb, tmp_path / "rgb.safetensors"))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_every_other_misfit_is_still_refused(tmp_path):
    one = save_weights(create_model("resnet18", in_channels=1, **SMALL), tmp_path / "gray.safetensors")
    with pytest.raises(WeightsError, match=r"conv1.weight \(file \(16, 1, 7, 7\), model \(16, 3, 7, 7\)\)"):
        load_weights(create_model("resnet18", **SMALL), one)  # not 3 channels in the file: nothing to adapt
    rgb = save_weights(create_model("resnet18", **SMALL), tmp_path / "rgb.safetensors")
    with pytest.raises(WeightsError, match="conv1.weight"):
        load_weights(create_model("resnet18", in_channels=1, width_multiplier=0.5), rgb)  # other widths
    meta = load_weights(create_model("resnet18", **SMALL), rgb)
    assert "adapted" not in meta.extra  # a stem that fits is not touched, nor said to be
