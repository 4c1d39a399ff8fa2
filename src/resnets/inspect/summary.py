"""Paper Table 1 for any network, measured on the real module.

The network runs once on the meta device (no memory, no compute), so any size is instant.
Output sizes come from forward hooks on the stem, the stages and the fc, so they obey
O = floor((I + 2P - K) / S) + 1 for any input size. Multiply-adds (MACs) are PyTorch's own
count (`torch.utils.flop_counter.FlopCounterMode`) of the convolutions and the fc layer, per
module, halved: what the paper's Table 1 calls "FLOPs" and torchvision reports as GFLOPS.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnets.errors import SpecError
from resnets.models.create import create_model
from resnets.models.notation import format_block, format_stem, spec_stages
from resnets.models.resnet import ResNet
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import default_input_size
from resnets.text import format_table, human

MACS_NOTE = (
    "MACs = multiply-adds of the convolutions and the fc layer (the paper's 'FLOPs'); FLOPs = 2 x MACs."
)


@dataclass
class StageRow:
    """One row of Table 1: a stage (conv1, conv2_x, ..., fc), what it outputs and what it costs.

    output_size: (H, W) of the stage's output map; blocks: the stage in the paper's notation;
    params: parameters (elements); macs: multiply-adds for one image; downsampling: input size
    over output size so far (2 for conv1, 32 after conv5_x); pool: the max pool that opens
    conv2_x on the ImageNet stem, shown on its own line as in Table 1.
    """

    name: str
    output_size: tuple[int, int]
    blocks: str
    params: int
    macs: int
    downsampling: int
    pool: str = ""

    @property
    def flops(self) -> int:
        """Floating-point operations for one image: 2 x MACs (a multiply and an add)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: sizes as lists, downsampling as "1/N"; what `resnets summary --json` prints."""
        return {
            "name": self.name,
            "output_size": list(self.output_size),
            "blocks": self.blocks,
            "pool": self.pool,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "downsampling": f"1/{self.downsampling}",
        }


@dataclass
class Summary:
    """Table 1 for one network at one input size; `str()` is the table as `resnets summary` prints it."""

    model: str
    spec: ResNetSpec
    input_size: tuple[int, int]
    layers: int
    description: str
    stages: list[StageRow] = field(default_factory=list)

    @property
    def params(self) -> int:
        """All parameters of the network (elements)."""
        return sum(s.params for s in self.stages)

    @property
    def macs(self) -> int:
        """Multiply-adds for one image at `input_size`: the paper's "FLOPs" (Table 1)."""
        return sum(s.macs for s in self.stages)

    @property
    def flops(self) -> int:
        """2 x MACs."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-able totals and rows; what `resnets summary --json` prints."""
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "layers": self.layers,
            "description": self.description,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "stages": [s.to_dict() for s in self.stages],
        }

    def __str__(self) -> str:
        header = ("layer name", "output size", "block", "params", "MACs", "FLOPs", "downsampling")
        rows: list[tuple[str, ...]] = []
        for r in self.stages:
            if r.pool:
                rows.append((r.name, "", r.pool, "", "", "", ""))
            rows.append(
                (
                    "" if r.pool else r.name,
                    size_text(r.output_size),
                    r.blocks,
                    f"{r.params:,}",
                    human(r.macs),
                    human(r.flops),
                    f"1/{r.downsampling}",
                )
            )
        rows.append(("total", "", "", f"{self.params:,}", human(self.macs), human(self.flops), ""))
        title = f"{self.model}: {self.description}; input {size_text(self.input_size)}"
        return "\n".join([title, format_table(header, rows, right={3, 4, 5}), MACS_NOTE])


def summary(
    model_or_name: ResNet | str | ResNetSpec, input_size: int | tuple[int, int] | None = None
) -> Summary:
    """Table 1 of the paper (He et al. 2015) for this network: per stage (conv1, conv2_x, ...,
    fc) the output size, the block in the paper's notation, parameters and MACs for one image.

    `model_or_name` is a ResNet (measured on a meta-device copy; the model is untouched), a zoo
    name, a compact spec, Table-1 notation or a ResNetSpec. `input_size` is the image size in
    pixels, an int or (H, W); None (the default) is the network's own: 32 for the CIFAR stem,
    224 otherwise. Raises SpecError for something that is not a network or a bad size, and
    InputError for an input smaller than the network's total stride.
    """
    if isinstance(model_or_name, ResNet):
        probe = copy.deepcopy(model_or_name).to("meta")
    elif isinstance(model_or_name, (str, ResNetSpec)):
        probe = create_model(model_or_name, device="meta")
    else:
        raise SpecError(f"summary() takes a resnets model, name or spec, not {type(model_or_name).__name__}")
    if input_size is None:
        input_size = default_input_size(probe.spec)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise SpecError(f"input_size must be a positive int or (H, W), got {input_size!r}")
    return _measure(probe.eval(), (int(size[0]), int(size[1])))


def size_text(hw: tuple[int, int]) -> str:
    """(H, W) as Table 1 writes it: '56x56'."""
    return f"{hw[0]}x{hw[1]}"


def stage_names(spec: ResNetSpec) -> list[str]:
    """The paper's row names: conv1, conv2_x ... conv(N+1)_x, fc."""
    return ["conv1"] + [f"conv{i + 2}_x" for i in range(len(spec.depths))] + ["fc"]


# The modules of ResNet (torchvision names) that make up each of the paper's rows; the pre-
# activation network's final BN-ReLU belongs to the last stage.
def _stage_modules(spec: ResNetSpec) -> dict[str, tuple[str, ...]]:
    names = stage_names(spec)
    modules = {"conv1": ("conv1", "bn1", "relu"), "fc": ("avgpool", "fc")}
    for i, name in enumerate(names[1:-1]):
        modules[name] = (("maxpool",) if i == 0 else ()) + (f"layer{i + 1}",)
    modules[names[-2]] += ("final_bn",)
    return modules


def _measure(model: ResNet, size: tuple[int, int]) -> Summary:
    spec = model.spec
    names = stage_names(spec)
    outputs: dict[str, tuple[int, int]] = {}

    def record(stage: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            outputs[stage] = (out.shape[-2], out.shape[-1]) if out.dim() == 4 else (1, 1)

        return hook

    handles = [model.conv1.register_forward_hook(record("conv1"))]
    for name, stage in zip(names[1:-1], model.stages):
        handles.append(stage.register_forward_hook(record(name)))
    owner = {module: row for row, modules in _stage_modules(spec).items() for module in modules}
    params = dict.fromkeys(names, 0)
    for pn, p in model.named_parameters():
        params[owner[pn.split(".")[0]]] += p.numel()
    _drop_batchnorm(model)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.empty(1, spec.in_channels, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    # Per-module counts are keyed "ResNet.layer1" etc.; a module that never ran has none.
    counts = counter.get_flop_counts()
    root = type(model).__name__
    macs = {
        row: sum(sum(counts.get(f"{root}.{m}", {}).values()) for m in modules) // 2
        for row, modules in _stage_modules(spec).items()
    }

    strides = [1 if spec.stem == "cifar" else 2, spec.stem_stride]
    for s in spec.stage_strides[1:]:
        strides.append(strides[-1] * s)
    blocks = [format_block(s) for s in spec_stages(spec)]
    rows = [
        StageRow("conv1", outputs["conv1"], format_stem(spec), params["conv1"], macs["conv1"], strides[0])
    ]
    for i, name in enumerate(names[1:-1]):
        pool = "3x3 max pool, stride 2" if i == 0 and spec.stem != "cifar" else ""
        rows.append(StageRow(name, outputs[name], blocks[i], params[name], macs[name], strides[i + 1], pool))
    head = f"average pool, {spec.num_classes}-d fc, softmax" if spec.num_classes else "average pool (no fc)"
    rows.append(StageRow("fc", (1, 1), head, params["fc"], macs["fc"], strides[-1]))
    return Summary(model.name, spec, size, spec.num_layers, _describe(spec), rows)


def _drop_batchnorm(model: nn.Module) -> None:
    """BN keeps shapes and costs no MACs, but is slow on the meta device: skip it in the probe."""
    for module in list(model.modules()):
        for key, child in module._modules.items():
            if isinstance(child, nn.BatchNorm2d):
                module._modules[key] = nn.Identity()


def _describe(spec: ResNetSpec) -> str:
    """The table's title: depth, block, stride placement, shortcut option and refinements."""
    parts = [f"{spec.num_layers} layers", f"{spec.block} blocks"]
    if spec.block == "bottleneck":
        parts.append(
            "stride on the 3x3 (v1.5)"
            if spec.stride_on == "3x3"
            else "stride on the first 1x1 (v1, as in the paper)"
        )
    if spec.groups > 1:
        parts.append(f"{spec.groups} groups (ResNeXt)")
    if spec.plain:
        parts.append("plain: no shortcuts")
    else:
        parts.append(
            f"shortcut {spec.shortcut}"
            + (" with average-pool downsampling (ResNet-D)" if spec.avg_down else "")
        )
    if spec.preact:
        parts.append("pre-activation")
    if spec.stem == "deep":
        parts.append("deep stem")
    if spec.output_stride is not None:
        dilated = [f"conv{i + 2}_x" for i, d in enumerate(spec.stage_dilations) if d > 1]
        parts.append(f"output stride {spec.output_stride} (dilated {', '.join(dilated)})")
    return ", ".join(parts)
