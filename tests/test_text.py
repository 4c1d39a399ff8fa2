"""The shared text helpers: fixed-width tables and human-readable counts."""

import pytest

from resnets.text import format_table, human


def test_columns_are_as_wide_as_their_widest_cell_and_right_aligned_where_asked():
    text = format_table(("name", "params"), [("resnet18", "11,689,512"), ("r20", "269,722")], right={1})
    assert text.splitlines() == [
        "name          params",
        "--------  ----------",
        "resnet18  11,689,512",
        "r20          269,722",
    ]


def test_trailing_spaces_are_stripped_and_short_rows_refused():
    assert format_table(("a", "b"), [("long cell", "")]).splitlines()[2] == "long cell"
    with pytest.raises(ValueError, match="2 columns"):
        format_table(("a", "b"), [("only one",)])


@pytest.mark.parametrize(
    "n, text",
    [(999, "999"), (1_000, "1.00K"), (269_722, "269.72K"), (25_557_032, "25.56M"), (3.86e9, "3.86G")],
)
def test_human_counts_use_si_steps_of_a_thousand(n, text):
    assert human(n) == text
