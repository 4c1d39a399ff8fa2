"""From the state dicts of the ecosystem to ours: unwrap, strip prefixes, rename layouts.

Our module names are torchvision's, so torchvision and timm ResNets (resnet*, resnet*d with the
deep stem `conv1.0/1/3/4/6`, wide, ResNeXt) map by identity. What differs is packaging and a few
names of the widely used CIFAR reproduction (akamaster/pytorch_resnet_cifar10):

- training checkpoints wrap the weights: `{"state_dict": ...}` (timm, Lightning, the CIFAR
  reproduction), `{"model": ...}` (torchvision's reference scripts), `model_state_dict`, `net`,
  or only an EMA copy;
- `module.` (DataParallel / DDP), `model.` (Lightning) and `_orig_mod.` (torch.compile) prefixes;
- the CIFAR reproduction names the head `linear` and the projection shortcut `shortcut`; its
  option-A shortcut has no parameters, like ours (sec. 3.3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from resnets.errors import WeightsError
from resnets.text import shorten

# Where training checkpoints keep the weights, most specific first; EMA copies only as a last resort.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "state_dict_ema", "model_ema", "ema")
PREFIXES = ("module.", "model.", "_orig_mod.")
# (their name, ours): applied to keys our model does not have under their own name
RENAMES = (("linear.", "fc."), (".shortcut.", ".downsample."))


def extract_state_dict(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a state dict, unwrapped from a training checkpoint if need be."""
    seen = 0
    while isinstance(obj, Mapping) and seen < 4:
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:  # a state dict's values are tensors, never mappings
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: no tensors found (top-level keys: {shorten(obj) or 'none'})")
    return tensors


def map_to_model(tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename `tensors` onto `model`'s state_dict keys; what cannot be mapped keeps its name, so
    `check_state_dict` can report it."""
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        mapped[_our_name(key, own)] = value
    # Checkpoints from before PyTorch 0.4.1 have no BN batch counters; they only count, so keep ours.
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = value
    return mapped


def _our_name(key: str, own: Mapping[str, Any]) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                key, stripped = key[len(prefix) :], True
    if key in own:
        return key
    renamed = key
    for theirs, ours in RENAMES:
        if theirs.startswith("."):
            renamed = renamed.replace(theirs, ours)
        elif renamed.startswith(theirs):
            renamed = ours + renamed[len(theirs) :]
    return renamed if renamed in own else key
