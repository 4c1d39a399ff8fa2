"""Fold BatchNorm into the convolution before it, for inference.

In eval mode BN is an affine map per channel, so conv followed by BN equals one conv with
rescaled weights and a bias: fewer kernels, same outputs (to float rounding).
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_bn(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every conv->BN pair folded into one conv; `model` is
    left untouched.

    For a conv W, b followed by BN (running mean mu, variance var, gamma, beta, eps), the
    folded conv is W' = W * gamma / sqrt(var + eps) per output channel and
    b' = (b - mu) * gamma / sqrt(var + eps) + beta (torch.nn.utils.fusion.fuse_conv_bn_eval).
    Outputs equal the eval-mode model's to float rounding, for any input shape (N, C, H, W).

    Pairs are the `conv_bn_pairs` each block declares, plus consecutive (Conv2d, BatchNorm2d) in
    any nn.Sequential (projection shortcuts, the deep stem). Pre-activation BNs (He et al. 2016)
    that follow a sum, not a conv, stay as they are. Training-mode statistics are not folded:
    the copy is in eval mode, so fold a trained model for inference or export only.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
            owner, key = _last_conv(module, conv_name)
            bn = getattr(module, bn_name, None)
            if owner is not None and isinstance(bn, nn.BatchNorm2d):
                owner._modules[key] = fuse_conv_bn_eval(owner._modules[key], bn)
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    return folded


def _last_conv(module: nn.Module, name: str) -> tuple[nn.Module | None, str]:
    """Where the conv named `name` lives: itself, or the last layer of a Sequential (deep stem)."""
    child = getattr(module, name, None)
    if isinstance(child, nn.Conv2d):
        return module, name
    if isinstance(child, nn.Sequential) and len(child) and isinstance(child[-1], nn.Conv2d):
        return child, list(child._modules)[-1]
    return None, ""


def _fold_sequential(seq: nn.Sequential) -> None:
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        conv, bn = seq._modules[first], seq._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            seq._modules[first] = fuse_conv_bn_eval(conv, bn)
            seq._modules[second] = nn.Identity()
