"""Narrow copies of the zoo's networks for tests that need real arithmetic: the same wiring (the
same modules, stem, shortcuts, strides and groups), fewer channels, so the giants cost seconds."""

from torch import nn

from resnets import ResNetSpec, create_model
from resnets.errors import SpecError


def narrow(network: str | ResNetSpec, /, **overrides) -> nn.Module:
    """`network` (a zoo name or a spec) at 1/16 of its width, or 1/8 or 1/4 where a grouped 3x3
    (ResNeXt) would be left with less than one filter per group. `overrides` go to create_model."""
    for multiplier in (1 / 16, 1 / 8, 1 / 4):
        try:
            return create_model(network, width_multiplier=multiplier, **overrides)
        except SpecError:
            continue
    raise AssertionError(f"{network} has no narrow copy")
