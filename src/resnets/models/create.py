"""From what a user types — a zoo name, a compact spec or Table-1 notation — to a ResNet."""

from __future__ import annotations

import difflib
import re
from contextlib import nullcontext
from typing import Any

import torch

from resnets.errors import SpecError
from resnets.models.notation import spec_from_notation
from resnets.models.resnet import ResNet
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import ZOO

# The spec fields a user may override on a named network (the CLI's model flags, a training
# config's model fields); `resolve_spec` takes any field, these are the ones offered.
MODEL_OVERRIDES = (
    "num_classes",
    "in_channels",
    "shortcut",
    "width_multiplier",
    "drop_path_rate",
    "zero_init_residual",
)

_COMPACT = re.compile(r"(?P<block>basic|bottleneck):(?P<depths>\d+(?:-\d+)*)(?::(?P<widths>\d+(?:-\d+)*))?")


def list_models() -> list[str]:
    """Every named network, in the order of the zoo table (zoo.py)."""
    return list(ZOO)


def resolve_spec(name_or_spec: str | ResNetSpec, **overrides: Any) -> ResNetSpec:
    """The spec for a zoo name, "block:depths[:widths]" or Table-1 notation, with overrides.

    Overrides are ResNetSpec fields (e.g. `shortcut="B"`, `num_classes=100`,
    `width_multiplier=0.5`); those set to None are ignored, so unset command-line flags keep
    each model's defaults. Raises SpecError (NotationError for bad notation) naming what is
    wrong and, for an unknown name, the closest known ones.
    """
    if isinstance(name_or_spec, ResNetSpec):
        spec = name_or_spec
    elif not isinstance(name_or_spec, str):
        raise SpecError(f"expected a model name or ResNetSpec, got {type(name_or_spec).__name__}")
    elif name_or_spec in ZOO:
        spec = ZOO[name_or_spec].spec
    elif "[" in name_or_spec:
        spec = spec_from_notation(name_or_spec)
    elif ":" in name_or_spec:
        spec = _spec_from_compact(name_or_spec)
    else:
        raise SpecError(_unknown_name_message(name_or_spec))
    return spec.replace(**overrides)


def create_model(
    name_or_spec: str | ResNetSpec,
    *,
    name: str | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> ResNet:
    """Build a ResNet: `create_model("resnet50")`, `create_model("resnet20", shortcut="B")`,
    `create_model("bottleneck:3-4-6-3")` or `create_model("[3x3,16; 3x3,16]x3, ...")`.

    `overrides` are ResNetSpec fields (see `resolve_spec`). The model's `name` is the text it
    was built from (a ResNetSpec gives "custom") unless `name` is given. `device="meta"` builds
    without allocating or initialising weights: shapes only, instant for any size. Raises
    SpecError for unknown names, options or invalid values.
    """
    spec = resolve_spec(name_or_spec, **overrides)
    if name is None:
        name = name_or_spec if isinstance(name_or_spec, str) else "custom"
    with torch.device(device) if device is not None else nullcontext():
        return ResNet(spec, name=name)


def _spec_from_compact(text: str) -> ResNetSpec:
    match = _COMPACT.fullmatch(text.strip())
    if match is None:
        raise SpecError(
            f"cannot read model spec {text!r}: expected 'basic|bottleneck:DEPTHS[:WIDTHS]', "
            "e.g. 'bottleneck:3-4-6-3' or 'basic:3-3-3:16-32-64'"
        )
    depths = tuple(int(d) for d in match["depths"].split("-"))
    cifar = len(depths) == 3
    if match["widths"]:
        widths = tuple(int(w) for w in match["widths"].split("-"))
    else:
        widths = tuple((16 if cifar else 64) * 2**i for i in range(len(depths)))
    return ResNetSpec(
        block=match["block"],
        depths=depths,
        widths=widths,
        stem="cifar" if cifar else "imagenet",
        shortcut="A" if cifar else "B",
        num_classes=10 if cifar else 1000,
    )


def _unknown_name_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(ZOO), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "; see 'resnets list'"
    return f"unknown model {name!r}{hint}"
