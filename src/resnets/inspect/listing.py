"""`resnets list`: every named network with its family, depth, parameters and multiply-adds."""

from __future__ import annotations

from typing import Any

from resnets.inspect.summary import human, summary
from resnets.models.zoo import ZOO, default_input_size, variant


def model_listing() -> list[dict[str, Any]]:
    """One row per zoo entry, measured on the module itself (meta device, so it is instant)."""
    rows = []
    for name, info in ZOO.items():
        size = default_input_size(info.spec)
        table = summary(name, input_size=size)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "variant": variant(info.spec),
                "layers": info.spec.num_layers,
                "params": table.params,
                "macs": table.macs,
                "input_size": size,
                "source": info.source,
            }
        )
    return rows


def format_listing(rows: list[dict[str, Any]]) -> str:
    header = ("name", "family", "variant", "layers", "params", "MACs", "input")
    cells = [
        (
            r["name"],
            r["family"],
            r["variant"],
            str(r["layers"]),
            human(r["params"]),
            human(r["macs"]),
            f"{r['input_size']}px",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
