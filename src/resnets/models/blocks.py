"""The building blocks of He et al. 2015 (Fig. 2 and 5) and their pre-activation forms (He et al. 2016).

Module names follow torchvision (`conv1`, `bn1`, ..., `downsample`) so that published
checkpoints load unchanged. `downsample` is the shortcut: an `nn.Identity` when shapes match,
`ZeroPadShortcut` for option A, a 1x1 projection for B/C, and None in plain networks.
Every 3x3 conv may be dilated (a network with an `output_stride`); `dilation` pads by as much,
so a stride-1 3x3 keeps the map's size dilated or not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """3x3 conv with padding = dilation d: O = floor((I + 2d - 2d - 1) / S) + 1, so stride 1 keeps
    the size (d = 1: the paper's 3x3; d > 1: dilated, torchvision's and timm's convention)."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv without padding: changes channels (bottleneck reduce/expand, projections)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: a parameter-free identity that subsamples and zero-pads new channels (sec. 3.3).

    The padding is split evenly around the input channels, as in the widely used CIFAR
    reproduction, so its checkpoints give the same outputs here.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_front = (out_channels - in_channels) // 2
        self.pad_back = out_channels - in_channels - self.pad_front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


def make_drop_path(p: float) -> nn.Module:
    """Stochastic depth (Huang et al. 2016) on a residual branch: in training, each sample's
    branch output (N, C, H, W) is zeroed with probability `p` and the kept ones scaled by
    1 / (1 - p), so the expected sum is unchanged; in eval mode it is the identity.

    torchvision's `StochasticDepth(p, mode="row")`; an `nn.Identity` when p is 0. Neither holds
    parameters or buffers, so state_dict keys do not depend on the rate.
    """
    if p == 0.0:
        return nn.Identity()
    return StochasticDepth(p, mode="row")


def make_shortcut(
    kind: str,
    in_channels: int,
    out_channels: int,
    stride: int,
    *,
    avg_down: bool = False,
    dilated: bool = False,
    norm: bool = True,
) -> nn.Module:
    """The shortcut of one block, mapping (N, in_channels, H, W) to (N, out_channels, H/stride, W/stride).

    He et al. 2015, sec. 3.3: option A ("A") is an identity that zero-pads new channels; "B"
    projects (1x1 conv + BN) only where the shape changes; "C" projects everywhere. `avg_down`
    (ResNet-D, Bag of Tricks sec. 4.1) averages 2x2 windows before an unstrided projection; in a
    block that dilates instead of striding (`dilated`) the 2x2 average keeps the size, padded
    right and bottom (timm's `AvgPool2dSame`). `norm=False` leaves the projection a bare 1x1
    conv, as the pre-activation networks' authors have it (He et al. 2016; resnet-1k-layers'
    resnet-pre-act.lua, fb.resnet.torch's preresnet.lua). Identity when shapes match (A, B).
    `kind` is validated by ResNetSpec.
    """
    shape_changes = stride != 1 or in_channels != out_channels
    if kind != "C" and not shape_changes:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    layers: list[nn.Module] = []
    if avg_down:
        # ResNet-D: average instead of skipping 3/4 of the input with a strided 1x1 conv.
        layers.append(_average_pool(stride, dilated))
        stride = 1
    layers.append(conv1x1(in_channels, out_channels, stride))
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def _average_pool(stride: int, dilated: bool) -> nn.Module:
    if stride != 1:
        return nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
    if dilated:  # zero padding that counts in the mean, as timm's AvgPool2dSame pads
        return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.AvgPool2d(2, 1))
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut: [3x3, w; 3x3, w] in Table 1 (Fig. 5 left)."""

    expansion = 1
    # (conv, the BN that directly follows it): what BN folding may merge for inference.
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        drop_path_rate: float = 0.0,
        *,
        dilation: int = 1,
        first_dilation: int | None = None,
    ) -> None:
        """Maps (N, in_channels, H, W) to (N, width, H/stride, W/stride); the first 3x3 strides.

        `shortcut` is the block's `downsample` (see `make_shortcut`), None in a plain network;
        `drop_path_rate` is this block's stochastic-depth probability. `dilation` dilates the
        second 3x3, `first_dilation` (default: `dilation`) the first: the first block of a
        dilated stage keeps the previous stage's dilation there (timm's BasicBlock).
        """
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride, dilation=first_dilation or dilation)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = shortcut
        self.drop_path = make_drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is None:
            return self.relu(out)
        return self.relu(self.drop_path(out) + self.downsample(x))

    def branch_end(self) -> nn.Module:
        """The residual branch's last layer: zero its weight and the block starts as identity."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), and a shortcut: Fig. 5 right.

    The paper strides the first 1x1 ("v1"); torchvision strides the 3x3 ("v1.5"), which costs
    more multiply-adds and scores higher. `stride_on` picks one.
    """

    expansion = 4
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        drop_path_rate: float = 0.0,
        *,
        stride_on: str = "3x3",
        inner_width: int | None = None,
        groups: int = 1,
        dilation: int = 1,
    ) -> None:
        """Maps (N, in_channels, H, W) to (N, 4 * width, H/stride, W/stride).

        `stride_on` ("1x1" or "3x3") picks the strided conv; `inner_width` is the filters of the
        1x1 reduce and the 3x3 (default `width`; wider for wide ResNets and ResNeXt); `groups`
        is the 3x3's cardinality (ResNeXt, Xie et al. 2017); `dilation` dilates the 3x3 (the
        first block of a dilated stage keeps the previous stage's, as in torchvision). Other
        arguments as for BasicBlock.
        """
        super().__init__()
        inner = inner_width or width
        self.conv1 = conv1x1(in_channels, inner, stride if stride_on == "1x1" else 1)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride if stride_on == "3x3" else 1, groups, dilation)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut
        self.drop_path = make_drop_path(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is None:
            return self.relu(out)
        return self.relu(self.drop_path(out) + self.downsample(x))

    def branch_end(self) -> nn.Module:
        """The residual branch's last layer: zero its weight and the block starts as identity."""
        return self.bn3


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv twice, then add: the identity path stays clean (He et al. 2016, Fig. 4e).

    The first unit of each stage shares its BN-ReLU between both paths: its shortcut (identity,
    zero-padding or projection) reads the pre-activated input (He et al. 2016, appendix: the
    first unit after conv1 takes "the first activation right after conv1 and before splitting
    into two paths"; fb.resnet.torch's preresnet.lua 'no_preact'/'both_preact' units, the
    authors' resnet-pre-act.lua "Residual Units for increasing dimensions"). In every other
    unit the shortcut reads the raw input.
    """

    expansion = 1
    # bn1 acts on the block input (after a ReLU-free sum), so only the inner BNs fold.
    conv_bn_pairs = (("conv1", "bn2"),)

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        drop_path_rate: float = 0.0,
        *,
        dilation: int = 1,
        first_dilation: int | None = None,
        shortcut_from_preact: bool = False,
    ) -> None:
        """Arguments and shapes as for BasicBlock; `shortcut_from_preact`: the shortcut reads
        the BN-ReLU output (the first unit of a stage) instead of the raw input."""
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, width, stride, dilation=first_dilation or dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, dilation=dilation)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut
        self.drop_path = make_drop_path(drop_path_rate)
        self.shortcut_from_preact = shortcut_from_preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        if self.downsample is None:
            return out
        return self.drop_path(out) + self.downsample(pre if self.shortcut_from_preact else x)

    def branch_end(self) -> nn.Module:
        """The residual branch's last layer: zero its weight and the block starts as identity."""
        return self.conv2


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: BN-ReLU before each of 1x1, 3x3, 1x1 (He et al. 2016, Fig. 4e
    and Table 2's ResNet-164/1001); the shortcut reads as in PreActBasicBlock."""

    expansion = 4
    conv_bn_pairs = (("conv1", "bn2"), ("conv2", "bn3"))

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: nn.Module | None,
        drop_path_rate: float = 0.0,
        *,
        stride_on: str = "3x3",
        inner_width: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        shortcut_from_preact: bool = False,
    ) -> None:
        """Arguments and shapes as for Bottleneck; `shortcut_from_preact` as for PreActBasicBlock."""
        super().__init__()
        inner = inner_width or width
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv1x1(in_channels, inner, stride if stride_on == "1x1" else 1)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride if stride_on == "3x3" else 1, groups, dilation)
        self.bn3 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut
        self.drop_path = make_drop_path(drop_path_rate)
        self.shortcut_from_preact = shortcut_from_preact

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.downsample is None:
            return out
        return self.drop_path(out) + self.downsample(pre if self.shortcut_from_preact else x)

    def branch_end(self) -> nn.Module:
        """The residual branch's last layer: zero its weight and the block starts as identity."""
        return self.conv3


def block_class(block: str, preact: bool) -> type[nn.Module]:
    """The block for a spec's `block` ("basic" or "bottleneck") and `preact` (He et al. 2016)."""
    return {
        ("basic", False): BasicBlock,
        ("bottleneck", False): Bottleneck,
        ("basic", True): PreActBasicBlock,
        ("bottleneck", True): PreActBottleneck,
    }[(block, preact)]
