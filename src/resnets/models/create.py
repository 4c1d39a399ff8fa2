"""From what a user types — a zoo name, a compact spec or Table-1 notation — to a ResNet."""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any, Literal, overload

import torch

from resnets.errors import SpecError
from resnets.models.features import ResNetFeatures
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


def list_models(filter: str | Sequence[str] = "", exclude_filters: str | Sequence[str] = "") -> list[str]:
    """The named networks, in the order of the zoo table (zoo.py): all of them, or those matching
    any of the shell-style patterns in `filter` ("resnet5*", "preact_*") and none of
    `exclude_filters` (fnmatch, case-sensitive, as timm.list_models)."""
    include = [filter] if isinstance(filter, str) else list(filter)
    exclude = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    return [
        name
        for name in ZOO
        if (not any(include) or any(fnmatch.fnmatchcase(name, p) for p in include if p))
        and not any(fnmatch.fnmatchcase(name, p) for p in exclude if p)
    ]


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


@overload
def create_model(
    name_or_spec: str | ResNetSpec,
    *,
    name: str | None = None,
    device: str | torch.device | None = None,
    features_only: Literal[False] = False,
    out_indices: None = None,
    **overrides: Any,
) -> ResNet: ...


@overload
def create_model(
    name_or_spec: str | ResNetSpec,
    *,
    name: str | None = None,
    device: str | torch.device | None = None,
    features_only: Literal[True],
    out_indices: int | Sequence[int] | None = None,
    **overrides: Any,
) -> ResNetFeatures: ...


def create_model(
    name_or_spec: str | ResNetSpec,
    *,
    name: str | None = None,
    device: str | torch.device | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    **overrides: Any,
) -> ResNet | ResNetFeatures:
    """Build a ResNet: `create_model("resnet50")`, `create_model("resnet20", shortcut="B")`,
    `create_model("bottleneck:3-4-6-3")` or `create_model("[3x3,16; 3x3,16]x3, ...")`.

    `overrides` are ResNetSpec fields (see `resolve_spec`): `num_classes=0` gives a headless
    network returning pooled (N, num_features) features, `output_stride=8` or `16` a dilated
    one, as in timm. The model's `name` is the text it was built from (a ResNetSpec gives
    "custom") unless `name` is given. `device="meta"` builds without allocating or initialising
    weights: shapes only, instant for any size.

    `features_only=True` returns a backbone instead (models/features.py): forward gives the
    feature maps of the levels `out_indices` (0: the stem's activation, 1..N: the stages;
    default all), with timm's `feature_info`. Raises SpecError for unknown names, options or
    invalid values, or out_indices without features_only; InputError for a level out of range.
    """
    if out_indices is not None and not features_only:
        raise SpecError("out_indices selects feature maps: pass features_only=True with it")
    spec = resolve_spec(name_or_spec, **overrides)
    if name is None:
        name = name_or_spec if isinstance(name_or_spec, str) else "custom"
    with torch.device(device) if device is not None else nullcontext():
        model = ResNet(spec, name=name)
        return ResNetFeatures(model, out_indices) if features_only else model


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
