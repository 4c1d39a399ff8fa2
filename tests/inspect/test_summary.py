"""summary(): the network's own input size by default, str() is the Table-1 table, and the
explanation that goes with it reads the measured sizes."""

import pytest
import torch

from resnets import ResNet, create_model, summary
from resnets.errors import SpecError
from resnets.inspect import explain
from resnets.models.zoo import ZOO


@pytest.mark.parametrize("name", ["resnet20", "resnet110", "resnet18", "resnet50d"])
def test_default_input_size_is_the_one_the_network_was_designed_for(name):
    table = summary(name)
    designed = ZOO[name].input_size  # the zoo's record: 32 px for CIFAR nets, 224 for ImageNet ones
    assert table.input_size == (designed, designed)
    assert table.macs == summary(name, input_size=designed).macs
    assert summary(create_model(name, device="meta")).input_size == (designed, designed)


def test_resnet20_is_measured_at_32_px_and_ends_on_an_8x8_map():
    table = summary("resnet20")
    assert [row.output_size for row in table.stages] == [(32, 32), (32, 32), (16, 16), (8, 8), (1, 1)]


def test_str_is_the_table_and_repr_is_not():
    table = summary("resnet50_v1")
    text = str(table)
    lines = text.splitlines()
    assert lines[0] == f"resnet50_v1: {table.description}; input 224x224"
    assert lines[1].split() == [
        "layer",
        "name",
        "output",
        "size",
        "block",
        "params",
        "MACs",
        "FLOPs",
        "downsampling",
    ]
    assert set(lines[2]) == {"-", " "}
    total = next(line for line in lines if line.startswith("total"))
    assert f"{table.params:,}" in total and "3.86G" in total  # Table 1: 3.8 x 10^9 FLOPs
    assert "3x3 max pool, stride 2" in text and "[1x1, 64; 3x3, 64; 1x1, 256] x 3" in text
    assert repr(table) != text


def test_a_model_keeps_the_name_it_was_built_with():
    assert summary("resnet34").model == "resnet34"
    spec = ZOO["resnet18"].spec
    with torch.device("meta"):
        assert summary(ResNet(spec, name="my-net")).model == "my-net"
    assert summary(spec).model == "custom"


def test_summary_of_a_model_leaves_the_model_untouched():
    model = create_model("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.is_meta for p in model.parameters())


def test_bad_sizes_and_non_networks_are_refused():
    with pytest.raises(SpecError, match="input_size"):
        summary("resnet20", input_size=(32, 32, 3))
    with pytest.raises(SpecError, match="not int"):
        summary(3)


def test_the_explanation_has_a_line_per_row_and_quotes_the_measured_sizes():
    # O = floor((I + 2P - K) / S) + 1 by hand: 200 -> 100 -> 50 -> 25 -> 13 -> 7, 300 -> 150 -> 75 -> 38 -> 19 -> 10
    table = summary("resnet18", input_size=(200, 300))
    lines = explain(table)
    assert len(lines) == len(table.stages)
    assert "halves 200x300 to 100x150" in lines[0]
    assert "a 3x3 max pool with stride 2 halves the map to 50x75" in lines[1]
    assert "halving the map to 25x38" in lines[2] and "1x1 projection shortcut (option B" in lines[2]
    assert "the 7x10x512 map" in lines[-1] and "1000 class scores" in lines[-1]


def test_the_explanation_names_option_a_and_the_cifar_stem():
    lines = explain(summary("resnet56"))
    assert "keeps 32x32" in lines[0] and "(sec. 4.2)" in lines[0]
    assert "zero-padding identity shortcut (option A: no parameters)" in lines[2]
    assert "9 basic blocks (the 'x 9')" in lines[2]
