"""Every named network builds, runs forward and backward, and trains every parameter.

Backward runs on a narrow copy of each network with the same wiring (the same modules, stem,
shortcuts, strides and groups; only fewer channels), so the deep and wide giants cost seconds,
not minutes. The full-size network is checked where no arithmetic is needed: on the meta device
(parameter count against the papers' formulas, state_dict keys, output shape).
"""

import pytest
import torch
from torch import nn

from narrow_models import narrow
from resnets import ResNetSpec, create_model, list_models
from resnets.errors import SpecError
from resnets.models.blocks import ZeroPadShortcut


def wiring(model: nn.Module) -> list[tuple]:
    """What a width multiplier must leave alone: every module's name and type, every conv's
    kernel, stride, padding and groups, every pool's window and stride, every zero-pad shortcut's
    stride."""
    entries = []
    for name, m in model.named_modules():
        entry: tuple = (name, type(m).__name__)
        if isinstance(m, nn.Conv2d):
            entry += (m.kernel_size, m.stride, m.padding, m.groups, m.bias is None)
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            entry += (m.kernel_size, m.stride, m.padding)
        elif isinstance(m, ZeroPadShortcut):
            entry += (m.stride,)
        entries.append(entry)
    return entries


def expected_params(spec: ResNetSpec) -> int:
    """Parameters from the papers' descriptions, counted by hand from the spec's raw fields.

    convs have no bias; a BN has 2 per channel; basic block: two 3x3 (He et al. 2015, Fig. 5
    left); bottleneck: 1x1 reduce, 3x3 (grouped: ResNeXt), 1x1 expand x4 (Fig. 5 right), with
    the 3x3 width int(w * width_per_group / 64) * groups (torchvision's rule); shortcut B
    projects (1x1 conv + BN) where the shape changes, C everywhere, A and plain never (sec. 3.3);
    pre-activation puts a BN on each block's input instead of after its last conv, one after
    the last stage, and no BN after a projection (He et al. 2016; the authors' code).
    """

    def conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
        return cin // groups * cout * k * k

    bottleneck = spec.block == "bottleneck"
    c0 = spec.widths[0]
    if spec.stem == "imagenet":
        total = conv(spec.in_channels, c0, 7)
    elif spec.stem == "cifar":
        total = conv(spec.in_channels, c0, 3)
    else:  # deep stem: three 3x3 convs, BN-ReLU between them
        mid = spec.stem_width
        total = conv(spec.in_channels, mid, 3) + 2 * mid + conv(mid, mid, 3) + 2 * mid + conv(mid, c0, 3)
    if not spec.preact:
        total += 2 * c0
    cin = c0
    for stage, (depth, w) in enumerate(zip(spec.depths, spec.widths)):
        cout = 4 * w if bottleneck else w
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            if bottleneck:
                inner = int(w * spec.width_per_group / 64) * spec.groups
                total += conv(cin, inner, 1) + conv(inner, inner, 3, spec.groups) + conv(inner, cout, 1)
                total += 2 * (cin + 2 * inner) if spec.preact else 2 * (2 * inner + cout)
            else:
                total += conv(cin, w, 3) + conv(w, w, 3)
                total += 2 * (cin + w) if spec.preact else 2 * (2 * w)
            projects = spec.shortcut == "C" or (spec.shortcut == "B" and (stride != 1 or cin != cout))
            if projects and not spec.plain:
                total += conv(cin, cout, 1) + (0 if spec.preact else 2 * cout)
            cin = cout
    if spec.preact:
        total += 2 * cin
    return total + cin * spec.num_classes + spec.num_classes


@pytest.mark.parametrize("name", list_models())
def test_every_model_at_full_size_has_its_parameters_keys_and_output_shape(name):
    full = create_model(name, num_classes=7, device="meta")
    assert sum(p.numel() for p in full.parameters()) == expected_params(full.spec)
    size = full.min_input_size
    assert full(torch.empty(2, 3, size, size, device="meta")).shape == (2, 7)
    small = narrow(name, num_classes=7, device="meta")
    assert list(small.state_dict()) == list(full.state_dict())
    assert wiring(small) == wiring(full)
    assert small.spec.replace(width_multiplier=1.0) == full.spec


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_forward_and_backward_with_a_gradient_on_every_parameter(name):
    torch.manual_seed(0)
    model = narrow(name, num_classes=7)
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
    model = create_model("resnet20", num_classes=100, in_channels=1, width_multiplier=2.0, num_layers=None)
    assert model.fc.out_features == 100
    assert model.conv1.in_channels == 1
    assert model.conv1.out_channels == 32
    assert create_model("resnet20", shortcut=None).spec.shortcut == "A"


def test_a_width_multiplier_that_leaves_a_group_empty_is_refused():
    with pytest.raises(SpecError, match="fewer than 32 groups"):
        create_model("resnext50_32x4d", width_multiplier=1 / 16, device="meta")


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
