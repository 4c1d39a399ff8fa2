"""Paper Table 1 for any network, measured on the real module with forward hooks.

Output sizes come from running the module (on the meta device: no memory, no compute), so they
obey O = floor((I + 2P - K) / S) + 1 for any input size. Multiply-adds (MACs) count the
convolutions and the fc layer, as the paper and torchvision do; FLOPs = 2 x MACs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnets.errors import SpecError
from resnets.models.create import create_model
from resnets.models.notation import format_block, spec_stages
from resnets.models.resnet import ResNet
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import default_input_size


@dataclass
class StageRow:
    """One row of Table 1: a stage, what it outputs and what it costs."""

    name: str
    output_size: tuple[int, int]
    blocks: str
    params: int
    macs: int
    downsampling: int
    pool: str = ""
    explain: str = ""

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "output_size": list(self.output_size),
            "blocks": self.blocks,
            "pool": self.pool,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "downsampling": f"1/{self.downsampling}",
            "explain": self.explain,
        }


@dataclass
class Summary:
    model: str
    input_size: tuple[int, int]
    layers: int
    description: str
    stages: list[StageRow] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(s.params for s in self.stages)

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.stages)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
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

    def format_table(self, explain: bool = False) -> str:
        return _format_table(self, explain)


def summary(model_or_name: ResNet | str | ResNetSpec, input_size: int | tuple[int, int] = 224) -> Summary:
    """Table 1 of the paper for this network at this input size (int or (H, W))."""
    if isinstance(model_or_name, ResNet):
        probe = copy.deepcopy(model_or_name).to("meta")
        name = model_or_name.name
    elif isinstance(model_or_name, (str, ResNetSpec)):
        probe = create_model(model_or_name, device="meta")
        name = probe.name
    else:
        raise SpecError(f"summary() takes a resnets model, name or spec, not {type(model_or_name).__name__}")
    if input_size is None:
        input_size = default_input_size(probe.spec)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise SpecError(f"input_size must be a positive int or (H, W), got {input_size!r}")
    return _measure(probe.eval(), name, (int(size[0]), int(size[1])))


def _stage_of(module_name: str, num_stages: int) -> str:
    """Map torchvision module names to the paper's stage names (conv1, conv2_x, ..., fc)."""
    top = module_name.split(".")[0]
    if top in ("conv1", "bn1", "relu"):
        return "conv1"
    if top == "maxpool":
        return "conv2_x"
    if top.startswith("layer"):
        return f"conv{int(top[5:]) + 1}_x"
    if top == "final_bn":
        return f"conv{num_stages + 1}_x"
    return "fc"


def _measure(model: ResNet, name: str, size: tuple[int, int]) -> Summary:
    spec = model.spec
    n = len(spec.depths)
    names = ["conv1"] + [f"conv{i + 2}_x" for i in range(n)] + ["fc"]
    macs = dict.fromkeys(names, 0)
    outputs: dict[str, tuple[int, int]] = {}

    def count(module_name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            stage = _stage_of(module_name, n)
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_output = module.in_channels // module.groups * kh * kw
                macs[stage] += out[0].numel() * per_output
            else:
                macs[stage] += module.in_features * module.out_features

        return hook

    def record(stage: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            outputs[stage] = (out.shape[-2], out.shape[-1]) if out.dim() == 4 else (1, 1)

        return hook

    handles = [
        m.register_forward_hook(count(mn))
        for mn, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    handles.append(model.conv1.register_forward_hook(record("conv1")))
    for i, stage in enumerate(model.stages):
        handles.append(stage.register_forward_hook(record(f"conv{i + 2}_x")))
    handles.append(model.fc.register_forward_hook(record("fc")))
    params = dict.fromkeys(names, 0)
    for pn, p in model.named_parameters():
        params[_stage_of(pn, n)] += p.numel()
    _drop_batchnorm(model)
    try:
        with torch.no_grad():
            model(torch.empty(1, spec.in_channels, *size, device="meta"))
    finally:
        for h in handles:
            h.remove()

    strides = [1 if spec.stem == "cifar" else 2, spec.stem_stride]
    for s in spec.stage_strides[1:]:
        strides.append(strides[-1] * s)
    blocks = [format_block(s) for s in spec_stages(spec)]
    texts = _explanations(spec, size, outputs, names)
    rows = [
        StageRow(
            "conv1",
            outputs["conv1"],
            _stem_text(spec),
            params["conv1"],
            macs["conv1"],
            strides[0],
            explain=texts[0],
        )
    ]
    for i in range(n):
        stage = names[i + 1]
        pool = "3x3 max pool, stride 2" if i == 0 and spec.stem != "cifar" else ""
        rows.append(
            StageRow(
                stage,
                outputs[stage],
                blocks[i],
                params[stage],
                macs[stage],
                strides[i + 1],
                pool,
                texts[i + 1],
            )
        )
    head = f"average pool, {spec.num_classes}-d fc, softmax"
    rows.append(StageRow("fc", (1, 1), head, params["fc"], macs["fc"], strides[-1], explain=texts[-1]))
    return Summary(name, size, spec.num_layers, _describe(spec), rows)


def _drop_batchnorm(model: nn.Module) -> None:
    """BN keeps shapes and costs no MACs, but is slow on the meta device: skip it in the probe."""
    for module in list(model.modules()):
        for key, child in module._modules.items():
            if isinstance(child, nn.BatchNorm2d):
                module._modules[key] = nn.Identity()


def _stem_text(spec: ResNetSpec) -> str:
    out = spec.stem_channels
    if spec.stem == "cifar":
        return f"3x3, {out}"
    if spec.stem == "imagenet":
        return f"7x7, {out}, stride 2"
    mid = spec.deep_stem_width
    return f"3x3, {mid}, stride 2; 3x3, {mid}; 3x3, {out}"


def _describe(spec: ResNetSpec) -> str:
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
    return ", ".join(parts)


def _fmt_size(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def _shortcut_text(spec: ResNetSpec, changes: bool) -> str:
    if spec.plain:
        return "no shortcut (plain network)"
    if spec.shortcut == "C":
        return "a 1x1 projection shortcut (option C: projections everywhere)"
    if not changes:
        return "an identity shortcut"
    if spec.shortcut == "A":
        return "a zero-padding identity shortcut (option A: no parameters)"
    if spec.avg_down:
        return "a 2x2 average pool and a 1x1 projection shortcut (ResNet-D)"
    return "a 1x1 projection shortcut (option B: projections only where the shape changes)"


def _explanations(
    spec: ResNetSpec, size: tuple[int, int], outputs: dict[str, tuple[int, int]], names: list[str]
) -> list[str]:
    """One plain-language line per stage: what each number in the row means (seed question 000)."""
    first = outputs["conv1"]
    if spec.stem == "cifar":
        stem = (
            f"one 3x3 convolution with {spec.stem_channels} filters, stride 1 and padding 1 keeps "
            f"{_fmt_size(size)}: O = floor((I + 2*1 - 3)/1) + 1 = I (sec. 4.2)."
        )
    else:
        kernel = (
            "a 7x7 convolution (padding 3)"
            if spec.stem == "imagenet"
            else "three 3x3 convolutions (the first with stride 2)"
        )
        stem = (
            f"{kernel} with stride 2 and {spec.stem_channels} output filters halves "
            f"{_fmt_size(size)} to {_fmt_size(first)}: O = floor((I + 2P - K)/2) + 1."
        )
    lines = [stem]
    in_channels = spec.stem_channels
    for i, (depth, width, inner, out) in enumerate(
        zip(spec.depths, spec.stage_widths, spec.inner_widths, spec.out_channels)
    ):
        where = names[i + 1]
        parts = []
        if i == 0 and spec.stem != "cifar":
            parts.append(f"a 3x3 max pool with stride 2 halves the map to {_fmt_size(outputs[where])}")
        if spec.block == "basic":
            block = f"two 3x3 convolutions with {width} filters each"
        else:
            groups = f" in {spec.groups} groups" if spec.groups > 1 else ""
            block = f"a 1x1 convolution down to {inner} channels, a 3x3 convolution with {inner} filters{groups}, and a 1x1 convolution up to {out} channels"
        parts.append(f"{depth} {spec.block} block{'s' if depth > 1 else ''} (the 'x {depth}'), each {block}")
        if spec.groups > 1:
            parts[-1] += f" (the 'C={spec.groups}')"
        stride = spec.stage_strides[i]
        changes = stride != 1 or in_channels != out
        if stride != 1:
            conv = {"basic": "first 3x3", "3x3": "3x3", "1x1": "first 1x1"}[
                spec.block if spec.block == "basic" else spec.stride_on
            ]
            parts.append(
                f"the first block's {conv} convolution has stride 2, halving the map to "
                f"{_fmt_size(outputs[where])} while the filters double, so each layer keeps its "
                f"time cost (sec. 3.1); the first block has {_shortcut_text(spec, changes)}"
            )
        elif changes:
            parts.append(f"stride 1 throughout; the first block has {_shortcut_text(spec, changes)}")
        else:
            parts.append(f"stride 1 throughout; every block has {_shortcut_text(spec, changes)}")
        if depth > 1 and not spec.plain and (changes or stride != 1):
            parts.append(f"the other blocks have {_shortcut_text(spec, False)}")
        lines.append("; ".join(parts) + ".")
        in_channels = out
    lines.append(
        f"global average pooling turns the {_fmt_size(outputs[names[-2]])}x{in_channels} map into a "
        f"{in_channels}-vector; one fully connected layer gives {spec.num_classes} class scores "
        "(softmax in the loss)."
    )
    return lines


def human(n: float) -> str:
    """1234567 -> '1.23M': the unit people read MACs and params in."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _format_table(s: Summary, explain: bool) -> str:
    header = ("layer name", "output size", "block", "params", "MACs", "FLOPs", "downsampling")
    rows: list[tuple[str, ...]] = []
    for r in s.stages:
        cells = (
            r.name,
            _fmt_size(r.output_size),
            r.blocks,
            f"{r.params:,}",
            human(r.macs),
            human(r.flops),
            f"1/{r.downsampling}",
        )
        if r.pool:
            rows.append((r.name, "", r.pool, "", "", "", ""))
            cells = ("",) + cells[1:]
        rows.append(cells)
    rows.append(("total", "", "", f"{s.params:,}", human(s.macs), human(s.flops), ""))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {3, 4, 5}

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()

    out = [
        f"{s.model}: {s.description}; input {_fmt_size(s.input_size)}",
        line(header),
        line(tuple("-" * w for w in widths)),
    ]
    out += [line(r) for r in rows]
    out.append(
        "MACs = multiply-adds of the convolutions and the fc layer (the paper's 'FLOPs'); FLOPs = 2 x MACs."
    )
    if explain:
        out.append("")
        out.append("What each row means (kernel size, filters, repeats, stride and why):")
        out += [f"  {r.name}: {r.explain}" for r in s.stages]
    return "\n".join(out)
