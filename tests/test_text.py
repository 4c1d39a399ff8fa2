"""resnets.text: the wording every layer shares, against hand-written expectations."""

import argparse

import pytest

from resnets.cli.common import parse_input_size
from resnets.errors import InputError
from resnets.text import first_line, format_table, human, human_bytes, parse_size, shorten, size_hw


def test_first_line_keeps_the_first_line_or_names_the_type():
    assert first_line(ValueError("  bad header\nat byte 12\n")) == "bad header"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError("x" * 500), limit=160) == "x" * 160


def test_shorten_lists_the_first_few_and_counts_the_rest():
    keys = [f"layer{i}.weight" for i in range(10)]
    assert shorten(keys[:3]) == "layer0.weight, layer1.weight, layer2.weight"
    assert shorten(keys[:8]) == ", ".join(keys[:8])  # exactly the limit: nothing elided
    assert shorten(keys) == ", ".join(keys[:8]) + " and 2 more"
    assert shorten(keys, limit=2) == "layer0.weight, layer1.weight and 8 more"
    assert shorten([]) == ""


@pytest.mark.parametrize(
    "value, size, hw",
    [
        ("224", 224, (224, 224)),
        (" 200x300 ", (200, 300), (200, 300)),
        ("200X300", (200, 300), (200, 300)),
        ("200,300", (200, 300), (200, 300)),
        (32, 32, (32, 32)),
        ((16, 24), (16, 24), (16, 24)),
        ([16, 24], (16, 24), (16, 24)),  # as JSON metadata records it
    ],
)
def test_sizes_read_as_n_or_h_by_w(value, size, hw):
    assert parse_size(value) == size
    assert size_hw(value) == hw


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1x2x3", "", "2.5", (0, 3), [1, 2, 3], True, 2.0, None])
def test_bad_sizes_are_input_errors(value):
    with pytest.raises(InputError, match="expected N or HxW"):
        parse_size(value)


def test_the_command_line_reads_sizes_with_the_same_parser():
    assert parse_input_size("224") == 224 and parse_input_size("200x300") == (200, 300)
    with pytest.raises(argparse.ArgumentTypeError, match="positive sizes"):
        parse_input_size("0x4")


def test_human_numbers_in_powers_of_1000_and_bytes_in_powers_of_1024():
    assert [human(n) for n in (999, 1_000, 269_722, 25_557_032, 4_089_184_256)] == [
        "999",
        "1.00K",
        "269.72K",
        "25.56M",
        "4.09G",
    ]
    assert [human_bytes(n) for n in (0, 1023, 1024, 1_153_434, 3 * 2**30, 5000 * 2**30)] == [
        "0 bytes",
        "1023 bytes",
        "1.0 KiB",
        "1.1 MiB",
        "3.0 GiB",
        "5000.0 GiB",
    ]


def test_format_table_lines_up_columns_and_right_aligns_numbers():
    table = format_table(
        ["name", "params", "note"],
        [["resnet20", "269,722", ""], ["resnet1202", "19,424,026", "deep"]],
        right={1},
    )
    assert table == (
        "name            params  note\n"
        "----------  ----------  ----\n"
        "resnet20       269,722\n"
        "resnet1202  19,424,026  deep"
    )


def test_format_table_refuses_a_row_of_the_wrong_length():
    with pytest.raises(ValueError, match="a row has 1 cells, the header 2"):
        format_table(["a", "b"], [["only one"]])


def test_columns_are_as_wide_as_their_widest_cell_and_right_aligned_where_asked():
    text = format_table(("name", "params"), [("resnet18", "11,689,512"), ("r20", "269,722")], right={1})
    assert text.splitlines() == [
        "name          params",
        "--------  ----------",
        "resnet18  11,689,512",
        "r20          269,722",
    ]
