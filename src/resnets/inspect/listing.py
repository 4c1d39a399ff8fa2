"""The zoo as data: every named network with its family, depth, parameters and multiply-adds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resnets.errors import SpecError
from resnets.inspect.summary import summary
from resnets.models.zoo import ZOO, variant


def model_listing(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per zoo entry (those in `names`, default all), in zoo order, measured on the module
    itself (meta device, so it is instant): name, family, variant, layers (the paper's depth),
    params (elements), macs (multiply-adds for one image at the network's own input size),
    input_size (pixels), source. Raises SpecError for a name not in the zoo.
    """
    unknown = sorted(set(names or ()) - set(ZOO))
    if unknown:
        raise SpecError(f"not in the zoo: {', '.join(unknown)}")
    rows = []
    for name, info in ZOO.items():
        if names is not None and name not in names:
            continue
        table = summary(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "variant": variant(info.spec),
                "layers": info.spec.num_layers,
                "params": table.params,
                "macs": table.macs,
                "input_size": table.input_size[0],
                "source": info.source,
            }
        )
    return rows
