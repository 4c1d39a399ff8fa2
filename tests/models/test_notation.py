"""The paper's Table-1 notation: reading, writing, and errors that point at the bad token."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resnets import create_model, list_models, summary
from resnets.errors import SpecError
from resnets.models.notation import NotationError, format_notation, parse_notation, spec_from_notation

RESNET50 = "[1x1,64; 3x3,64; 1x1,256]x3, [1x1,128; 3x3,128; 1x1,512]x4, [1x1,256; 3x3,256; 1x1,1024]x6, [1x1,512; 3x3,512; 1x1,2048]x3"


def test_resnet50_written_in_table1_notation_is_resnet50():
    ours = create_model(RESNET50, device="meta")
    reference = create_model("resnet50", device="meta")
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


def test_seed_question_example_reads_kernel_filters_and_repeats():
    (stage,) = parse_notation("[1x1, 64; 3x3, 64; 1x1, 256] x 3")
    assert [(c.kernel, c.filters) for c in stage.convs] == [(1, 1 * 64), (3, 64), (1, 256)]
    assert stage.repeats == 3


def test_three_stages_give_the_cifar_network():
    spec = spec_from_notation("[3x3,16; 3x3,16]x3, [3x3,32; 3x3,32]x3, [3x3,64; 3x3,64]x3")
    assert spec == create_model("resnet20", device="meta").spec


def test_resnext_cardinality_is_read_from_c_equals():
    spec = spec_from_notation(
        "[1x1,128; 3x3,128,C=32; 1x1,256]x3, [1x1,256; 3x3,256,C=32; 1x1,512]x4,"
        " [1x1,512; 3x3,512,C=32; 1x1,1024]x6, [1x1,1024; 3x3,1024,C=32; 1x1,2048]x3"
    )
    assert (spec.groups, spec.width_per_group) == (32, 4)


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_network_round_trips_through_its_summary_notation(name):
    model = create_model(name, device="meta")
    blocks = ", ".join(row.blocks for row in summary(model).stages[1:-1])
    assert blocks == format_notation(model.spec)
    parsed = spec_from_notation(blocks)
    for field in ("block", "depths", "widths", "groups", "width_per_group"):
        assert getattr(parsed, field) == getattr(model.spec, field)


@pytest.mark.parametrize(
    "text, column, token",
    [
        ("[1x1,64; 3y3,64; 1x1,256]x3", 10, "3y3"),
        ("[3x3,64; 3x3,64]x", 18, ""),
        ("[3x3,64; 3x3,64]x0", 17, "x0"),
        ("[3x3,64 3x3,64]x2", 9, "3x3"),
        ("[3x3,64; 3x3,64]x2,", 20, ""),
        ("3x3,64; 3x3,64]x2", 1, "3x3"),
        ("[5x5,64; 3x3,64]x2", 2, "5x5"),
        ("[3x3,abc; 3x3,64]x2", 6, "abc"),
        ("", 1, ""),
    ],
)
def test_malformed_notation_points_at_the_token(text, column, token):
    with pytest.raises(NotationError) as info:
        parse_notation(text)
    assert info.value.column == column
    assert info.value.token == token
    assert f"column {column}" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[3x3,64; 3x3,32]x2",  # basic block widths differ
        "[3x3,64; 3x3,64]x2, [1x1,64; 3x3,64; 1x1,256]x2",  # mixed blocks
        "[1x1,64; 3x3,64; 1x1,250]x3",  # not 4x expansion
        "[1x1,64]x3",
    ],
)
def test_well_formed_but_impossible_networks_raise_spec_errors(text):
    with pytest.raises(SpecError):
        spec_from_notation(text)


stage_strategy = st.tuples(
    st.sampled_from(["basic", "bottleneck"]),
    st.lists(st.integers(1, 6), min_size=1, max_size=5),
    st.integers(1, 64),
)


@settings(max_examples=150, deadline=None)
@given(stage_strategy)
def test_generated_tables_round_trip(params):
    block, depths, base = params
    widths = [base * 2**i for i in range(len(depths))]
    if block == "basic":
        text = ", ".join(f"[3x3,{w}; 3x3,{w}]x{d}" for w, d in zip(widths, depths))
    else:
        text = ", ".join(f"[1x1,{w}; 3x3,{w}; 1x1,{4 * w}]x{d}" for w, d in zip(widths, depths))
    spec = spec_from_notation(text)
    assert (spec.block, list(spec.depths), list(spec.widths)) == (block, depths, widths)
    assert spec_from_notation(format_notation(spec)) == spec


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="[];,x×*C=0123456789 13abc", max_size=40))
def test_arbitrary_text_only_ever_raises_spec_errors(text):
    try:
        spec_from_notation(text)
    except SpecError:
        pass
