"""Layer responses (He et al. 2015, sec. 4.2, Fig. 7): the output of each 3x3 layer after BN and
before the ReLU or addition, against outputs collected here by hooks on the modules the paper's
description names, and the std computed by torch over all of them at once."""

import pytest
import torch

from resnets import create_model
from resnets.errors import InputError
from resnets.inspect.responses import layer_responses, paper_stage


def scramble_bn(model, seed=0):
    """BN statistics and affine parameters far from their initial values, so eval-mode BN is
    not the identity and every layer's response differs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g))
    return model.eval()


def expected_names(blocks_per_stage, bns_per_block=("bn1", "bn2")):
    return ["bn1"] + [
        f"layer{stage}.{block}.{bn}"
        for stage in (1, 2, 3)
        for block in range(blocks_per_stage)
        for bn in bns_per_block
    ]


def collected(model, names, batches):
    """Every output of the named modules over `batches`, by hooks, concatenated per module."""
    outputs = {name: [] for name in names}
    handles = [
        model.get_submodule(name).register_forward_hook(
            lambda m, i, out, name=name: outputs[name].append(out.detach().clone())
        )
        for name in names
    ]
    with torch.no_grad():
        for x in batches:
            model(x)
    for h in handles:
        h.remove()
    return {name: torch.cat(outs) for name, outs in outputs.items()}


@pytest.mark.parametrize("name", ["resnet20", "plain20"])
def test_each_3x3_layers_bn_output_in_forward_order_with_its_std_over_everything(name):
    model = scramble_bn(create_model(name))
    batches = [torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    responses = layer_responses(model, [(x, torch.zeros(len(x))) for x in batches])
    names = expected_names(3)  # the stem's 3x3 and two per block: 19 layers for a 20-layer net
    assert [r.name for r in responses] == names and [r.index for r in responses] == list(range(1, 20))
    outputs = collected(model, names, batches)
    for r in responses:
        out = outputs[r.name]
        assert r.count == out.numel() and r.channels == out.shape[1]
        assert r.std == pytest.approx(out.double().std().item(), rel=1e-9)
        assert r.mean == pytest.approx(out.double().mean().item(), rel=1e-9, abs=1e-12)
    assert len({round(r.std, 6) for r in responses}) == len(responses)  # really each its own layer
    assert [r.stage for r in responses[:3]] == ["conv1", "conv2_x", "conv2_x"]
    assert responses[-1].stage == "conv4_x" and paper_stage("layer3.2.bn2") == "conv4_x"


def test_projection_shortcuts_and_1x1_convs_are_not_3x3_layers():
    """Option B's shortcut BN follows a 1x1 conv; in a bottleneck only the middle conv is 3x3."""
    b = scramble_bn(create_model("resnet20", shortcut="B"))
    assert "layer2.0.downsample.1" in dict(b.named_modules())
    assert [r.name for r in layer_responses(b, [torch.randn(2, 3, 32, 32)])] == expected_names(3)
    bottleneck = scramble_bn(create_model("bottleneck:2-2-2:16-32-64"))
    names = [r.name for r in layer_responses(bottleneck, [torch.randn(2, 3, 32, 32)])]
    assert names == expected_names(2, ("bn2",))


def test_the_network_is_put_back_in_its_mode_and_bad_inputs_are_one_line_errors():
    model = create_model("resnet20").train()
    layer_responses(model, [torch.randn(2, 3, 32, 32)])
    assert model.training
    with pytest.raises(InputError, match="pre-activation"):
        layer_responses(create_model("preact_resnet20"), [torch.randn(2, 3, 32, 32)])
    with pytest.raises(InputError, match="no images"):
        layer_responses(model, [])
