"""A ResNet as a backbone: the stage feature maps, in timm's `features_only` conventions.

`create_model(name, features_only=True, out_indices=(1, 2, 3, 4))` returns a ResNetFeatures:
its forward gives a list of maps, one per level taken, and `feature_info` says the channels,
the reduction of the input size and the module of each, as timm's FeatureListNet does. Its
modules and state_dict keys are the network's own (conv1, bn1, layer1, ...; no fc), so timm's
features_only weights load into it as they are, and a whole network's with `strict=False` (its
fc keys are reported unexpected); building the network, loading it and then wrapping it
(`ResNetFeatures(model, out_indices)`) shares the loaded modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from resnets.models.resnet import ResNet, checked_input, feature_take_indices


class FeatureInfo:
    """timm's FeatureInfo: one dict per feature level (`num_chs`, `reduction`, `module`, `index`),
    and the levels a features model returns (`out_indices`).

    `channels()`, `reduction()` and `module_name()` give that key for the returned levels (or for
    level `idx`, an int or a list); `get_dicts()` the dicts themselves. Indexing and `len` cover
    every level of the network, taken or not, as in timm.
    """

    def __init__(self, info: Sequence[dict[str, Any]], out_indices: Sequence[int]) -> None:
        self.info = [{**level, "index": i} for i, level in enumerate(info)]
        self.out_indices = tuple(out_indices)

    def from_other(self, out_indices: Sequence[int]) -> FeatureInfo:
        """The same levels with other `out_indices`."""
        return FeatureInfo(self.info, out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """`key` of each returned level (idx None), of level `idx`, or of each level in `idx`."""
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(
        self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """The dicts (only `keys` of them, if given) of the returned levels, or of `idx`."""

        def pick(i: int) -> dict[str, Any]:
            return dict(self.info[i]) if keys is None else {k: self.info[i][k] for k in keys}

        if isinstance(idx, int):
            return pick(idx)
        return [pick(i) for i in (self.out_indices if idx is None else idx)]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels C of each returned map (or of level `idx`)."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """How many input pixels per map pixel (2, 4, 8, 16, 32 for an ImageNet ResNet)."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """The module whose output each map is ("relu" for the stem, "layer1" ...)."""
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.get_dicts()!r})"


class ResNetFeatures(nn.ModuleDict):
    """The feature maps of a ResNet at the levels `out_indices` (timm's `features_only`).

    Level 0 is the stem's activation before the max pool, level i the output of stage i
    (layer{i}, the paper's conv{i+1}_x); `out_indices` takes timm's forms (None: every level;
    an int n: the last n; a sequence, negative from the end). forward maps (N, C, H, W) images
    to a list of (N, C_i, H / r_i, W / r_i) maps in level order, with C_i and r_i in
    `feature_info`. Only the modules up to the last level taken are kept, under the network's
    own names; the input is checked as the network checks it (InputError).
    """

    def __init__(self, model: ResNet, out_indices: int | Sequence[int] | None = None) -> None:
        """Takes `model`'s modules (shared, not copied). Raises InputError for a level out of
        range."""
        take, last = feature_take_indices(len(model.feature_info), out_indices)
        names = ["conv1", "bn1", "relu"]
        if last > 0:
            names += ["maxpool", *(f"layer{i}" for i in range(1, last + 1))]
        super().__init__({name: getattr(model, name) for name in names})
        self.out_indices = tuple(sorted(set(take)))
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)
        self._taps = frozenset(self.feature_info.module_name())
        self.in_channels = model.spec.in_channels
        self.min_input_size = self.feature_info.reduction(last)
        self.pretrained_cfg = dict(model.pretrained_cfg)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, in_channels, H, W) -> the maps of `out_indices`, in level order."""
        x = checked_input(x, self.in_channels, self.min_input_size)
        features = []
        for name, module in self.items():
            x = module(x)
            if name in self._taps:
                features.append(x)
        return features
