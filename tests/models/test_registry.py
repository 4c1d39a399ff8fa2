"""Every named network builds, runs forward and backward, and trains every parameter."""

import pytest
import torch

from resnets import create_model, list_models
from resnets.errors import SpecError


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_backward_with_a_gradient_on_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    size = model.min_input_size
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert torch.isfinite(out).all()


def test_overrides_change_the_network_and_none_keeps_defaults():
    model = create_model("resnet20", num_classes=100, in_channels=1, width=2.0, num_layers=None)
    assert model.fc.out_features == 100
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 32
    assert create_model("resnet20", shortcut=None).spec.shortcut == "A"


def test_unknown_names_and_options_suggest_what_exists():
    with pytest.raises(SpecError, match="did you mean .*'resnet50'"):
        create_model("resnet05")
    with pytest.raises(SpecError, match="unknown model option"):
        create_model("resnet20", depth=3)
    with pytest.raises(SpecError, match="shortcut must be one of"):
        create_model("resnet20", shortcut="D")


def test_compact_specs_build_the_same_network_as_the_zoo():
    assert (
        create_model("bottleneck:3-4-6-3", device="meta").spec == create_model("resnet50", device="meta").spec
    )
    assert create_model("basic:3-3-3", device="meta").spec == create_model("resnet20", device="meta").spec
    assert create_model("basic:2-2:8-16", device="meta").spec.widths == (8, 16)
