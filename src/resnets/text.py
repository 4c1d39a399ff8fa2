"""Text every layer shares: one-line errors, shortened lists, sizes, numbers and tables.

The bottom of the package (it imports only `resnets.errors`), so the library's messages and the
CLI's output are written the same way everywhere: an exception shown as its first line, a long
list of names as its first few "and N more", an input size read from "224" or "224x320", and
columns lined up the same way in every table we print.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from resnets.errors import InputError


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type name when the message is empty), cut
    to `limit` characters: third-party errors (PIL, safetensors, torch) run to many lines, and
    our errors are one line."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text if limit is None else text[:limit]


def shorten(items: Iterable[object], limit: int = 8) -> str:
    """'a, b, c' for short lists; the first `limit` and 'and N more' for long ones, so a message
    about thousands of keys or files stays one readable line."""
    names = [str(item) for item in items]
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def parse_size(value: int | str | Sequence[int]) -> int | tuple[int, int]:
    """An image size as given: 224 or "224" -> 224; "224x320", "224,320", (224, 320) or
    [224, 320] -> (224, 320) as (H, W), in pixels.

    Raises InputError (a ValueError) for anything else, or for a size below one pixel.
    """
    if isinstance(value, str):
        try:
            parts = [int(p) for p in value.strip().lower().replace(",", "x").split("x")]
        except ValueError:
            raise InputError(f"expected N or HxW, got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, Sequence) and all(isinstance(p, int) and not isinstance(p, bool) for p in value):
        parts = list(value)
    else:
        raise InputError(f"expected N or HxW, got {value!r}")
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise InputError(f"expected N or HxW with positive sizes, got {value!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def size_hw(value: int | str | Sequence[int]) -> tuple[int, int]:
    """(H, W) in pixels for any size `parse_size` reads: a single N is N x N."""
    size = parse_size(value)
    return (size, size) if isinstance(size, int) else size


def human(n: float) -> str:
    """1234567 -> '1.23M': the unit people read MACs and parameter counts in (powers of 1000)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MiB': a file size in bytes, KiB, MiB or GiB (powers of 1024)."""
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """A plain-text table: the header, a rule of dashes, then the rows; columns two spaces apart,
    as wide as their widest cell, left-aligned except the column indexes in `right` (numbers).
    Trailing spaces are cut. Every row must have as many cells as the header."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells, the header {len(header)}: {list(row)!r}")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])
