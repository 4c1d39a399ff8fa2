"""RGB weights for a network with another number of input channels: the stem's first convolution
is adapted instead of refused, so ImageNet weights can start a grayscale or multispectral model.

The rule is timm's `adapt_input_conv` (timm.models._manipulate), the tests' oracle: for one
input channel, the filters are summed over R, G and B (a gray image x gives the response the
RGB image (x, x, x) gave); for k channels, the RGB filters are repeated to k and scaled by 3/k,
so the response to a constant image keeps its size.
"""

from __future__ import annotations

import math

import torch
from torch import nn

RGB = 3


def adapt_input_conv(in_channels: int, weight: torch.Tensor) -> torch.Tensor:
    """A first-conv `weight` (out, 3, kh, kw) adapted to (out, in_channels, kh, kw): summed over
    the 3 input channels for in_channels 1, repeated and scaled by 3 / in_channels otherwise
    (timm's `adapt_input_conv`). Computed in fp32, returned in the weight's dtype.

    Raises ValueError for a weight that is not a 3-input-channel conv weight, or in_channels < 1.
    """
    if in_channels < 1 or weight.ndim != 4 or weight.shape[1] != RGB:
        raise ValueError(
            f"adapts (out, 3, kh, kw) conv weights to >= 1 channels; got {tuple(weight.shape)} -> {in_channels}"
        )
    if in_channels == RGB:
        return weight
    w = weight.float()
    if in_channels == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_channels / RGB), 1, 1)[:, :in_channels] * (RGB / in_channels)
    return w.to(weight.dtype)


def first_conv_key(model: nn.Module) -> str | None:
    """The state_dict key of the network's first convolution's weight (conv1.weight; conv1.0.weight
    for a deep stem), or None for a network without one."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def adapt_stem(
    model: nn.Module, tensors: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], str | None]:
    """`tensors` (already named as `model`'s keys) with a 3-input-channel first convolution adapted to
    the model's input channels, and a one-line note saying so; unchanged (note None) when the
    stem fits already or differs in anything but its input channels (then the fit check refuses it).
    """
    key = first_conv_key(model)
    own = model.state_dict().get(key) if key else None
    given = tensors.get(key) if key else None
    if own is None or given is None or given.shape == own.shape or given.ndim != 4 or own.ndim != 4:
        return tensors, None
    if given.shape[1] != RGB or given.shape[0] != own.shape[0] or given.shape[2:] != own.shape[2:]:
        return tensors, None
    k = own.shape[1]
    how = "summed over R, G and B" if k == 1 else f"R, G, B repeated to {k} and scaled by 3/{k}"
    note = f"adapted {key} from 3 to {k} input channel{'s' if k > 1 else ''} ({how}, as timm does)"
    return {**tensors, key: adapt_input_conv(k, given)}, note
