"""The responses of a network's 3x3 layers, as He et al. 2015 measure them for Fig. 7.

Sec. 4.2, "Analysis of Layer Responses": "Fig. 7 shows the standard deviations (std) of the
layer responses. The responses are the outputs of each 3x3 layer, after BN and before other
nonlinearity (ReLU/addition)." A layer's response here is the output of a BatchNorm2d whose
input is the output of a 3x3 convolution, found by forward hooks as the network runs (so any
network built of conv -> BN pairs is measured the same way: plain nets, ResNets, bottlenecks,
the CIFAR and ImageNet stems); its std is over every value the layer outputs on the data
(images x channels x positions), accumulated in float64 batch by batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from resnets.errors import InputError


@dataclass(frozen=True)
class LayerResponse:
    """One 3x3 layer's response over the data: `index` counts the 3x3 layers from 1 in forward
    order (the x axis of Fig. 7, top); `name` is its BN's module name; `stage` the paper's
    (conv1, conv2_x, ...); `std` and `mean` are over all `count` values (N x C x H x W)."""

    index: int
    name: str
    stage: str
    channels: int
    std: float
    mean: float
    count: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Sums:
    """Float64 running sums of one layer's outputs: count, sum, sum of squares."""

    def __init__(self, name: str, channels: int) -> None:
        self.name, self.channels = name, channels
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, out: torch.Tensor) -> None:
        values = out.detach().double()
        self.count += values.numel()
        self.total += values.sum().item()
        self.squares += values.square().sum().item()

    def response(self, index: int) -> LayerResponse:
        mean = self.total / max(self.count, 1)
        variance = (self.squares - self.count * mean * mean) / max(self.count - 1, 1)
        return LayerResponse(
            index=index,
            name=self.name,
            stage=paper_stage(self.name),
            channels=self.channels,
            std=math.sqrt(max(variance, 0.0)),
            mean=mean,
            count=self.count,
        )


@torch.no_grad()
def layer_responses(model: nn.Module, batches: Iterable[Any]) -> list[LayerResponse]:
    """The std (and mean) of each 3x3 layer's response, after BN and before the ReLU or the
    addition (sec. 4.2, Fig. 7), over every image of `batches`, in forward order.

    `batches` yields image tensors (N, C, H, W), already normalised, or (images, labels) pairs
    as the data loaders give them. The network runs in eval mode (BN with its running
    statistics, as at test time) and is put back in its mode afterwards.

    Raises InputError for a pre-activation network (its BN comes before each conv, so there is
    no response "after BN" to measure) or a network with no 3x3 conv followed by a BN, and
    for empty `batches`.
    """
    spec = getattr(model, "spec", None)
    if spec is not None and spec.preact:
        raise InputError(
            "layer responses after BN (sec. 4.2, Fig. 7) are defined for networks whose 3x3 convs "
            "are followed by BN; a pre-activation network puts BN before each conv"
        )
    names = {module: name for name, module in model.named_modules()}
    sums: dict[str, _Sums] = {}
    order: list[str] = []
    last: dict[str, torch.Tensor | None] = {"conv": None}

    def after_conv(module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        last["conv"] = out if module.kernel_size == (3, 3) else None

    def after_bn(module: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        if last["conv"] is not None and inputs[0] is last["conv"]:
            name = names[module]
            if name not in sums:
                sums[name] = _Sums(name, out.shape[1])
                order.append(name)
            sums[name].add(out)
        last["conv"] = None

    handles = [
        m.register_forward_hook(after_conv if isinstance(m, nn.Conv2d) else after_bn)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
    ]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
            seen += int(x.shape[0])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen == 0:
        raise InputError("no images to measure the layer responses on")
    if not order:
        raise InputError("this network has no 3x3 conv followed by a BN: no layer responses to measure")
    return [sums[name].response(i + 1) for i, name in enumerate(order)]


def paper_stage(name: str) -> str:
    """The paper's name of the stage a module belongs to: 'bn1' -> conv1, 'layer2.0.bn1' ->
    conv3_x (torchvision's layerK is the paper's conv(K+1)_x, Table 1)."""
    found = re.match(r"layer(\d+)\.", name)
    return f"conv{int(found.group(1)) + 1}_x" if found else "conv1"
