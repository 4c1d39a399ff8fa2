"""torch.fx, torch.export and torchvision's feature extraction trace every zoo network, and the
eager input checks stay: one clear InputError for a wrong tensor, also from the traced module.

Oracles: the eager module's own outputs (a trace must compute the same thing), and torchvision's
create_feature_extractor on torchvision's resnet50 with the same weights.
"""

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from cifar_reference import randomize_bn_statistics
from narrow_models import narrow
from resnets import ResNetSpec, create_model, list_models
from resnets.errors import InputError
from resnets.models.zoo import ZOO


def inputs(model, n: int = 2) -> torch.Tensor:
    size = max(model.min_input_size, 8)
    return torch.randn(n, model.spec.in_channels, size, size)


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_network_traces_with_torch_fx_and_keeps_its_input_checks(name):
    """At full size on the meta device (shapes only, so the giants cost seconds): the trace
    runs to logits, and its module still refuses a wrong tensor in one line."""
    model = create_model(name, device="meta").eval()
    traced = torch.fx.symbolic_trace(model)
    size = model.min_input_size
    x = torch.empty(2, 3, size, size, device="meta")
    assert traced(x).shape == (2, model.spec.num_classes)
    with pytest.raises(InputError, match="too small"):
        traced(torch.empty(1, 3, size - 1, size - 1, device="meta"))
    with pytest.raises(InputError, match="channels-last"):
        traced(x.permute(0, 2, 3, 1))


def shallow_wirings() -> dict[str, ResNetSpec]:
    """One zoo name per distinct wiring at up to two blocks per stage: deeper networks repeat
    their second block's code (the same modules, the same shortcut), so resnet1202 computes as
    resnet20 does, and the default suite runs each wiring once (the slow test: every name at
    full depth)."""
    seen: dict = {}
    for name, info in ZOO.items():
        seen.setdefault(info.spec.replace(depths=tuple(min(d, 2) for d in info.spec.depths)), name)
    return {name: spec for spec, name in seen.items()}


def trace_export_and_compare(model: torch.nn.Module) -> None:
    """torch.fx's and torch.export's programs compute what the eager module computes."""
    model = randomize_bn_statistics(model)
    x = inputs(model)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(torch.fx.symbolic_trace(model)(x), expected)
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, spec", shallow_wirings().items())
def test_every_zoo_wiring_traces_and_exports_to_the_same_outputs(name, spec):
    trace_export_and_compare(narrow(spec, name=name))


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_zoo_network_exports_at_full_depth(name):
    trace_export_and_compare(narrow(name))


def test_drop_path_dilation_and_a_headless_network_trace_and_export_too():
    trace_export_and_compare(narrow("resnet18d", drop_path_rate=0.2, output_stride=8, num_classes=0))


def test_eager_calls_keep_their_one_line_errors():
    model = create_model("resnet18").eval()
    with pytest.raises(InputError, match="4-D"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(InputError, match="expected 3 input channels"):
        model.forward_intermediates(torch.randn(1, 1, 64, 64))


def test_torchvisions_feature_extractor_gives_torchvisions_maps_on_our_resnet50():
    torch.manual_seed(0)
    theirs = randomize_bn_statistics(torchvision.models.resnet50())
    ours = create_model("resnet50").eval()
    ours.load_state_dict(theirs.state_dict())
    nodes = {"relu": "c1", "layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = create_feature_extractor(theirs, nodes)(x)
        got = create_feature_extractor(ours, nodes)(x)
        maps = ours.forward_intermediates(x, intermediates_only=True)
    assert list(got) == list(expected)
    for key, ours_map in zip(expected, maps):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5)
        assert torch.equal(got[key], ours_map)


@pytest.mark.parametrize("name", ["preact_resnet164", "resnet50d"])
def test_torchvisions_feature_extractor_traces_train_and_eval_graphs(name):
    model = narrow(name, drop_path_rate=0.1)
    stages = [f"layer{i + 1}" for i in range(len(model.stages))]
    for nodes in get_graph_node_names(model):  # the train graph (drop path on), the eval graph
        assert all(any(node.startswith(f"{stage}.") for node in nodes) for stage in stages)
    extractor = create_feature_extractor(model, {s: s for s in stages})
    x = inputs(model)
    extractor.eval()
    model.eval()
    with torch.no_grad():
        got = extractor(x)
        maps = model.forward_intermediates(
            x, indices=list(range(1, len(stages) + 1)), intermediates_only=True
        )
    for stage, expected in zip(stages, maps):
        assert torch.equal(got[stage], expected)
