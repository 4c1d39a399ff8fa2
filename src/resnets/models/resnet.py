"""ResNet(nn.Module), built from a ResNetSpec: stem -> layer1..layerN -> pool -> fc.

The structure and the `state_dict` names are torchvision's, so its weights (and timm's for the
ResNet-D stem) load unchanged; every variant is a field of the spec, not another class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from resnets.errors import InputError
from resnets.models.blocks import block_class, make_shortcut
from resnets.models.spec import ResNetSpec


class ResNet(nn.Module):
    """The network a ResNetSpec describes (He et al. 2015, sec. 3.4 and Table 1; sec. 4.2 for CIFAR).

    Input (N, spec.in_channels, H, W) with H, W >= spec.total_stride; output logits
    (N, spec.num_classes). `forward_features` gives the last map (N, num_features, H/32, W/32)
    (H/4 for the CIFAR stem). Raises InputError for inputs of the wrong rank, channels or size.

    `name` is what the network is called in weights files, exports and summaries: the zoo name
    or the spec text it was built from ("custom" for a bare spec).
    """

    # The stem's conv and BN (when the stem has them as single layers): see resnets.runtime.fold_bn.
    conv_bn_pairs = (("conv1", "bn1"),)

    def __init__(self, spec: ResNetSpec, name: str = "custom") -> None:
        super().__init__()
        self.spec = spec
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = _stem(spec)
        in_channels = spec.stem_channels
        block_index, total_blocks = 0, sum(spec.depths)
        for stage, depth in enumerate(spec.depths):
            blocks = []
            for i in range(depth):
                stride = spec.stage_strides[stage] if i == 0 else 1
                blocks.append(_block(spec, stage, in_channels, stride, block_index, total_blocks))
                in_channels = spec.out_channels[stage]
                block_index += 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        # Pre-activation blocks end on a conv, so the network adds the last BN-ReLU (He et al. 2016).
        self.final_bn = nn.BatchNorm2d(in_channels) if spec.preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, spec.num_classes)
        self.num_features = in_channels
        # Off by default; `set_grad_checkpointing` (or resnets.optimize) turns it on.
        self.grad_checkpointing = False
        _init_weights(self)

    @property
    def stages(self) -> list[nn.Sequential]:
        """layer1 ... layerN: the paper's conv2_x ... conv(N+1)_x."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.spec.depths))]

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
        """Raise InputError for tensors this network cannot mean to receive.

        Under torch.compile these checks cost nothing: they read only static shape facts, so
        dynamo evaluates them while tracing and adds no graph break (tests/test_fast.py proves it).
        """
        c = self.spec.in_channels
        if x.dim() != 4:
            raise InputError(
                f"expected a 4-D batch (N, {c}, H, W), got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
            )
        if x.shape[1] != c:
            hint = "; it looks channels-last (NHWC): pass x.permute(0, 3, 1, 2)" if x.shape[-1] == c else ""
            raise InputError(
                f"expected {c} input channels in dim 1 (N, C, H, W), got shape {tuple(x.shape)}{hint}"
            )
        if min(x.shape[2], x.shape[3]) < self.min_input_size:
            raise InputError(
                f"input {x.shape[2]}x{x.shape[3]} is too small: this network downsamples by "
                f"{self.min_input_size}, so H and W must be at least {self.min_input_size}"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling, (N, num_features, H', W'): what detection and
        feature extraction use. H' = H / total_stride for sizes that divide evenly."""
        self.check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        checkpointed = self.grad_checkpointing and torch.is_grad_enabled()
        for stage in self.stages:
            x = _checkpointed_blocks(stage, x) if checkpointed else stage(x)
        if self.final_bn is not None:
            x = torch.relu(self.final_bn(x))
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and fc (sec. 3.4): (N, C, H', W') -> logits (N, num_classes), or the
        pooled (N, C) features with `pre_logits`."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) images -> (N, num_classes) logits (softmax is in the loss)."""
        return self.forward_head(self.forward_features(x))


def _block(spec: ResNetSpec, stage: int, in_channels: int, stride: int, index: int, total: int) -> nn.Module:
    """Block `index` of `total`: its shortcut, its drop-path rate (rising linearly from 0 at the
    first block to spec.drop_path_rate at the last) and, for bottlenecks, where it strides and
    how wide and grouped its 3x3 is."""
    out_channels = spec.out_channels[stage]
    shortcut = (
        None if spec.plain else make_shortcut(spec.shortcut, in_channels, out_channels, stride, spec.avg_down)
    )
    width, rate = spec.stage_widths[stage], spec.drop_path_rate * index / max(total - 1, 1)
    block = block_class(spec.block, spec.preact)
    if spec.block == "basic":
        return block(in_channels, width, stride, shortcut, rate)
    return block(
        in_channels,
        width,
        stride,
        shortcut,
        rate,
        stride_on=spec.stride_on,
        inner_width=spec.inner_widths[stage],
        groups=spec.groups,
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


def _stem(spec: ResNetSpec) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
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
    if model.fc.weight.is_meta:
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
