"""Plain-text tables and human-readable numbers, shared by everything that shows results to people."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """A fixed-width text table: the header, a rule of dashes, then one line per row.

    Columns are as wide as their widest cell and two spaces apart; columns whose index is in
    `right` are right-aligned (numbers), the others left-aligned; trailing spaces are stripped.
    Every row must have as many cells as the header (ValueError otherwise).
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {tuple(row)} has {len(row)} cells for {len(header)} columns")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def human(n: float) -> str:
    """1234567 -> '1.23M', 40_550_000 -> '40.55M', 999 -> '999': decimal (SI) steps of 1000,
    two decimals, the unit people read parameter and MAC counts in."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))
