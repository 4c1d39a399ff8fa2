"""ResNet(nn.Module), built from a ResNetSpec: stem -> layer1..layerN -> pool -> fc.

The structure and the `state_dict` names are torchvision's, so its weights (and timm's for the
ResNet-D stem) load unchanged; every variant is a field of the spec, not another class.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from resnets.errors import InputError, SpecError
from resnets.models.blocks import block_class, make_shortcut
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import pretrained_cfg

GLOBAL_POOLS = ("avg", "")


class ResNet(nn.Module):
    """The network a ResNetSpec describes (He et al. 2015, sec. 3.4 and Table 1; sec. 4.2 for CIFAR).

    Input (N, spec.in_channels, H, W) with H, W >= spec.total_stride; output logits
    (N, spec.num_classes), or the pooled (N, num_features) features when num_classes is 0.
    `forward_features` gives the last map (N, num_features, H/32, W/32) (H/4 for the CIFAR stem,
    H/output_stride for a dilated network). Raises InputError for inputs of the wrong rank,
    channels or size, in eager mode; torch.fx, torch.export, torch.compile and torch.jit.trace
    trace through the checks.

    Backbone API as timm's ResNet has it: `feature_info` (channels, reduction, module name of
    the stem and of each stage), `forward_intermediates`, `prune_intermediate_layers`,
    `get_classifier`, `reset_classifier`, and `pretrained_cfg` (input size, crop, interpolation,
    mean/std the network expects; timm.data.resolve_data_config reads it).

    `name` is what the network is called in weights files, exports and summaries: the zoo name
    or the spec text it was built from ("custom" for a bare spec).
    """

    # The stem's conv and BN (when the stem has them as single layers): see resnets.runtime.fold_bn.
    conv_bn_pairs = (("conv1", "bn1"),)

    def __init__(self, spec: ResNetSpec, name: str = "custom") -> None:
        super().__init__()
        self.spec = spec
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = _build_stem(spec)
        in_channels = spec.stem_channels
        block_index, total_blocks = 0, sum(spec.depths)
        for stage, depth in enumerate(spec.depths):
            blocks = []
            for i in range(depth):
                blocks.append(_block(spec, stage, i, in_channels, block_index, total_blocks))
                in_channels = spec.out_channels[stage]
                block_index += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        # Pre-activation blocks end on a conv, so the network adds the last BN-ReLU (He et al. 2016).
        self.final_bn = nn.BatchNorm2d(in_channels) if spec.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.global_pool = "avg"
        self.num_features = in_channels
        self.fc = _classifier(in_channels, spec.num_classes)
        self.feature_info = feature_info(spec)
        self.pretrained_cfg = pretrained_cfg(spec, name)
        # Off by default; `set_grad_checkpointing` (or resnets.optimize) turns it on.
        self.grad_checkpointing = False
        _init_weights(self)

    @property
    def stages(self) -> list[nn.Sequential]:
        """layer1 ... layerN: the paper's conv2_x ... conv(N+1)_x."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.spec.depths))]

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier; 0 for a headless network (timm's attribute)."""
        return self.spec.num_classes

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for `pretrained_cfg`."""
        return self.pretrained_cfg

    @property
    def min_input_size(self) -> int:
        """The smallest H and W in pixels (= spec.total_stride): smaller inputs reach the last
        stages as 1x1 maps that no longer downsample."""
        return self.spec.total_stride

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Keep only each block's input for backward and recompute the rest: activation memory
        drops to about one tensor per block, for about one extra forward pass of compute."""
        self.grad_checkpointing = enable

    def check_input(self, x: torch.Tensor) -> None:
        """Raise InputError for tensors this network cannot mean to receive (see `checked_input`)."""
        checked_input(x, self.spec.in_channels, self.min_input_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling, (N, num_features, H', W'): what detection and
        feature extraction use. H' = H / total_stride for sizes that divide evenly."""
        x = self.maxpool(self._stem_act(checked_input(x, self.spec.in_channels, self.min_input_size)))
        for stage in self.stages:
            x = self._stage(stage, x)
        return self._final_act(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and fc (sec. 3.4): (N, C, H', W') -> logits (N, num_classes), or the
        pooled (N, C) features with `pre_logits` (or without a classifier); the map unchanged
        when pooling was removed (`reset_classifier(0, "")`)."""
        if self.global_pool:
            x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) images -> (N, num_classes) logits (softmax is in the loss)."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of the levels in `feature_info`, as timm's ResNet returns them.

        Level 0 is the stem's activation (before the max pool; reduction 2, or 1 for the CIFAR
        stem), level i the output of stage i (layer{i}, the paper's conv{i+1}_x). `indices`: the
        last n levels for an int n, all for None, the listed ones (negative counting from the
        end) for a sequence; the maps come in forward order, each (N, C_i, H / r_i, W / r_i).
        `norm` applies a pre-activation network's final BN-ReLU to the last stage's map;
        `stop_early` skips the stages after the last level taken; `intermediates_only` returns
        the list alone, otherwise (final features as forward_features gives them, list).
        Raises InputError for a level out of range, an output_fmt other than "NCHW", or an
        input forward would refuse.
        """
        if output_fmt != "NCHW":
            raise InputError(f"output_fmt must be 'NCHW' (feature maps are (N, C, H, W)), got {output_fmt!r}")
        take, last = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self._stem_act(checked_input(x, self.spec.in_channels, self.min_input_size))
        if 0 in take:
            intermediates.append(x)
        x = self.maxpool(x)
        stages = self.stages[:last] if stop_early else self.stages
        for level, stage in enumerate(stages, start=1):
            x = self._stage(stage, x)
            if level in take:
                final = norm and level == len(self.stages)
                intermediates.append(self._final_act(x) if final else x)
        if intermediates_only:
            return intermediates
        if len(stages) == len(self.stages):
            x = self._final_act(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop what `forward_intermediates(indices=indices)` does not need, in place, as timm does:
        the stages after the last level (emptied, so their names stay), the max pool when only
        the stem is kept, the final BN of a pre-activation network (`prune_norm`, or when the
        last stage goes), and the classifier with its pooling (`prune_head`, or when the last
        stage goes: `reset_classifier(0, "")`). Returns the levels kept (absolute indices).
        The spec still describes the whole network. Raises InputError for a level out of range.
        """
        take, last = feature_take_indices(len(self.feature_info), indices)
        for level in range(last + 1, len(self.feature_info)):
            setattr(self, f"layer{level}", nn.Sequential())
        if last == 0:
            self.maxpool = nn.Identity()
        prune_end = last < len(self.stages)
        if prune_norm or prune_end:
            self.final_bn = None
        if prune_end:
            self.num_features = self.feature_info[last]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def get_classifier(self) -> nn.Module:
        """The classifier: `fc`, an nn.Linear (nn.Identity when num_classes is 0)."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for `num_classes` outputs (0: none; forward returns the pooled
        (N, num_features) features), freshly initialised as nn.Linear is, on the network's
        device and dtype; the spec and `pretrained_cfg` follow, so saved weights rebuild it.
        `global_pool` is "avg" (global average pooling, sec. 3.4) or "" (none: forward returns
        the (N, C, H', W') map; only without a classifier); None keeps the current one.
        Raises SpecError for another pooling or a classifier on unpooled maps.
        """
        pool = self.global_pool if global_pool is None else global_pool
        if pool not in GLOBAL_POOLS:
            raise SpecError(f"global_pool must be 'avg' or '' (no pooling), got {global_pool!r}")
        if not pool and num_classes:
            raise SpecError("a classifier needs pooled features: use global_pool='avg' or num_classes=0")
        self.spec = self.spec.replace(num_classes=num_classes)
        self.global_pool = pool
        self.avgpool = nn.AdaptiveAvgPool2d(1) if pool else nn.Identity()
        ref = next(self.parameters())
        self.fc = _classifier(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def _stem_act(self, x: torch.Tensor) -> torch.Tensor:
        """conv1-BN-ReLU: feature level 0 (the max pool follows)."""
        return self.relu(self.bn1(self.conv1(x)))

    def _stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return _checkpointed_blocks(stage, x)
        return stage(x)

    def _final_act(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.final_bn is None else torch.relu(self.final_bn(x))


@torch.fx.wrap
def checked_input(x: torch.Tensor, in_channels: int, min_size: int) -> torch.Tensor:
    """`x` itself, after raising InputError for a tensor the network cannot mean to receive: not
    4-D (N, C, H, W), not `in_channels` channels (with a hint when it looks channels-last), or
    H or W below `min_size` pixels.

    The checks read only shape facts. Under torch.compile and torch.export those are static
    (or guarded), so they add no graph break (tests/test_fast.py); torch.fx records this
    function as one call (`torch.fx.wrap`) instead of tracing its `if`s, so symbolic_trace and
    torchvision's create_feature_extractor work and the traced module still checks its input.
    """
    if x.dim() != 4:
        raise InputError(
            f"expected a 4-D batch (N, {in_channels}, H, W), got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        nhwc = x.shape[-1] == in_channels
        hint = "; it looks channels-last (NHWC): pass x.permute(0, 3, 1, 2)" if nhwc else ""
        raise InputError(
            f"expected {in_channels} input channels in dim 1 (N, C, H, W), got shape {tuple(x.shape)}{hint}"
        )
    if min(x.shape[2], x.shape[3]) < min_size:
        raise InputError(
            f"input {x.shape[2]}x{x.shape[3]} is too small: this network downsamples by "
            f"{min_size}, so H and W must be at least {min_size}"
        )
    return x


def feature_info(spec: ResNetSpec) -> list[dict[str, Any]]:
    """timm's `feature_info` for a ResNet: per level (stem activation, then each stage) the
    channels `num_chs`, the `reduction` of the input size so far and the `module` whose output
    it is. The pre-activation stem has no BN-ReLU, so its level is conv1's output."""
    stem = {"num_chs": spec.stem_channels, "reduction": 1 if spec.stem == "cifar" else 2}
    info = [{**stem, "module": "conv1" if spec.preact else "relu"}]
    reduction = spec.stem_stride
    for i, (channels, stride) in enumerate(zip(spec.out_channels, spec.stage_strides)):
        reduction *= stride
        info.append({"num_chs": channels, "reduction": reduction, "module": f"layer{i + 1}"})
    return info


def feature_take_indices(levels: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's rule for which feature levels to take, as absolute indices, and the largest: None
    takes all `levels`, an int n the last n, a sequence the listed ones (negative ones counted
    from the end). Raises InputError for an empty selection or a level out of range."""
    if indices is None:
        indices = levels
    if isinstance(indices, int):
        if not 0 < indices <= levels:
            raise InputError(f"the last {indices} feature levels: expected 1 to {levels}")
        take = list(range(levels - indices, levels))
    else:
        take = [levels + i if i < 0 else i for i in indices]
        bad = [i for i, t in zip(indices, take) if not 0 <= t < levels]
        if bad or not take:
            raise InputError(
                f"feature levels must be 0 (the stem) to {levels - 1} (the last stage), or -{levels} to -1; "
                f"got {list(indices)}"
            )
    return take, max(take)


def _classifier(num_features: int, num_classes: int, **factory: Any) -> nn.Module:
    """The fc layer (sec. 3.4), or nn.Identity for a headless network (num_classes = 0)."""
    return nn.Linear(num_features, num_classes, **factory) if num_classes else nn.Identity()


def _block(spec: ResNetSpec, stage: int, i: int, in_channels: int, index: int, total: int) -> nn.Module:
    """Block `i` of `stage`, block `index` of `total` in the network: its shortcut, its stride and
    dilation, its drop-path rate (rising linearly from 0 at the first block to
    spec.drop_path_rate at the last) and, for bottlenecks, where it strides and how wide and
    grouped its 3x3 is.

    A dilated stage's first block keeps the previous stage's dilation in its first 3x3
    (torchvision's `previous_dilation`, timm's `first_dilation`). In pre-activation networks
    the first block of each stage feeds its shortcut from its BN-ReLU, and projections have no
    BN (He et al. 2016; the authors' resnet-pre-act.lua)."""
    out_channels = spec.out_channels[stage]
    stride = spec.stage_strides[stage] if i == 0 else 1
    dilation = spec.stage_dilations[stage]
    first_dilation = (spec.stage_dilations[stage - 1] if stage else 1) if i == 0 else dilation
    shortcut = None
    if not spec.plain:
        shortcut = make_shortcut(
            spec.shortcut,
            in_channels,
            out_channels,
            stride,
            avg_down=spec.avg_down,
            dilated=i == 0 and dilation > 1,
            norm=not spec.preact,
        )
    width, rate = spec.stage_widths[stage], spec.drop_path_rate * index / max(total - 1, 1)
    block = block_class(spec.block, spec.preact)
    extra: dict[str, Any] = {"shortcut_from_preact": i == 0} if spec.preact else {}
    if spec.block == "basic":
        dilations = {"dilation": dilation, "first_dilation": first_dilation}
        return block(in_channels, width, stride, shortcut, rate, **dilations, **extra)
    return block(
        in_channels,
        width,
        stride,
        shortcut,
        rate,
        stride_on=spec.stride_on,
        inner_width=spec.inner_widths[stage],
        groups=spec.groups,
        dilation=first_dilation,
        **extra,
    )


def _checkpointed_blocks(stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for block in stage:
        if torch.compiler.is_compiling():
            # AOTAutograd applies BN's running-statistics updates once, whatever it recomputes.
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = checkpoint(
                block, x, use_reentrant=False, context_fn=lambda b=block: (nullcontext(), _kept_bn_stats(b))
            )
    return x


@contextmanager
def _kept_bn_stats(module: nn.Module) -> Iterator[None]:
    """Recomputing a block in backward must not count its batch twice in BN's running statistics."""
    with torch.no_grad():
        saved = [
            (buf, buf.clone())
            for bn in module.modules()
            if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.training and bn.track_running_stats
            for buf in (bn.running_mean, bn.running_var, bn.num_batches_tracked)
        ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _build_stem(spec: ResNetSpec) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """conv1, bn1, relu, maxpool; the pre-activation stem has no BN-ReLU (the first block does it)."""
    out = spec.stem_channels
    if spec.stem == "cifar":
        conv: nn.Module = nn.Conv2d(spec.in_channels, out, 3, 1, 1, bias=False)
    elif spec.stem == "imagenet":
        conv = nn.Conv2d(spec.in_channels, out, 7, 2, 3, bias=False)
    else:
        mid = spec.deep_stem_width
        conv = nn.Sequential(
            nn.Conv2d(spec.in_channels, mid, 3, 2, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, 1, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out, 3, 1, 1, bias=False),
        )
    pool: nn.Module = nn.Identity() if spec.stem == "cifar" else nn.MaxPool2d(3, 2, 1)
    if spec.preact:
        return conv, nn.Identity(), nn.Identity(), pool
    return conv, nn.BatchNorm2d(out), nn.ReLU(inplace=True), pool


def _init_weights(model: ResNet) -> None:
    """He initialisation for convs (He et al. 2015b), as the paper and torchvision do."""
    if next(model.parameters()).is_meta:
        return  # shapes only: nothing to initialise
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if model.spec.zero_init_residual and not model.spec.plain:
        for stage in model.stages:
            for block in stage:
                nn.init.zeros_(block.branch_end().weight)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (elements, not bytes), shared ones counted once."""
    return sum(p.numel() for p in model.parameters())
