"""A network explained in the paper's words: one plain-language line per row of Table 1.

Each line says what the row's numbers mean: kernel sizes, filters, how often a block repeats,
where and why the map shrinks (sec. 3.1, 3.3, 3.4 and 4.2 of He et al. 2015), which shortcut
each block has. The sizes are the ones `summary` measured, so the prose and the table agree.
"""

from __future__ import annotations

from resnets.inspect.summary import Summary, size_text
from resnets.models.spec import ResNetSpec


def explain(table: Summary) -> list[str]:
    """One line per row of `table` (conv1, conv2_x, ..., fc), in the order of its stages."""
    spec, size = table.spec, table.input_size
    outputs = {row.name: row.output_size for row in table.stages}
    lines = [_stem(spec, size, outputs["conv1"])]
    in_channels = spec.stem_channels
    for i, row in enumerate(table.stages[1:-1]):
        lines.append(_stage(spec, i, in_channels, row.output_size))
        in_channels = spec.out_channels[i]
    last = table.stages[-2].output_size
    head = (
        f"one fully connected layer gives {spec.num_classes} class scores (softmax in the loss)."
        if spec.num_classes
        else "no classifier (num_classes 0): the network returns these pooled features."
    )
    lines.append(
        f"global average pooling turns the {size_text(last)}x{in_channels} map into a "
        f"{in_channels}-vector; {head}"
    )
    return lines


def format_explanation(table: Summary) -> str:
    """The explanation as `resnets summary --explain` prints it below the table."""
    lines = ["What each row means (kernel size, filters, repeats, stride and why):"]
    lines += [f"  {row.name}: {text}" for row, text in zip(table.stages, explain(table))]
    return "\n".join(lines)


def _stem(spec: ResNetSpec, size: tuple[int, int], out: tuple[int, int]) -> str:
    if spec.stem == "cifar":
        return (
            f"one 3x3 convolution with {spec.stem_channels} filters, stride 1 and padding 1 keeps "
            f"{size_text(size)}: O = floor((I + 2*1 - 3)/1) + 1 = I (sec. 4.2)."
        )
    kernel = (
        "a 7x7 convolution (padding 3)"
        if spec.stem == "imagenet"
        else "three 3x3 convolutions (the first with stride 2)"
    )
    return (
        f"{kernel} with stride 2 and {spec.stem_channels} output filters halves "
        f"{size_text(size)} to {size_text(out)}: O = floor((I + 2P - K)/2) + 1."
    )


def _stage(spec: ResNetSpec, i: int, in_channels: int, out_size: tuple[int, int]) -> str:
    depth, width, inner, out = (
        spec.depths[i],
        spec.stage_widths[i],
        spec.inner_widths[i],
        spec.out_channels[i],
    )
    parts = []
    if i == 0 and spec.stem != "cifar":
        parts.append(f"a 3x3 max pool with stride 2 halves the map to {size_text(out_size)}")
    if spec.block == "basic":
        block = f"two 3x3 convolutions with {width} filters each"
    else:
        groups = f" in {spec.groups} groups" if spec.groups > 1 else ""
        block = (
            f"a 1x1 convolution down to {inner} channels, a 3x3 convolution with {inner} filters"
            f"{groups}, and a 1x1 convolution up to {out} channels"
        )
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
            f"{size_text(out_size)} while the filters double, so each layer keeps its "
            f"time cost (sec. 3.1); the first block has {_shortcut(spec, changes)}"
        )
    elif spec.stage_dilations[i] > 1:
        before = spec.stage_dilations[i - 1]
        parts.append(
            f"stride 1 where the paper strides: the 3x3 convolutions are dilated by "
            f"{spec.stage_dilations[i]} instead (the first block's first by {before}), so the map "
            f"stays {size_text(out_size)} (output stride {spec.total_stride}); the first block has "
            f"{_shortcut(spec, changes)}"
        )
    elif changes:
        parts.append(f"stride 1 throughout; the first block has {_shortcut(spec, changes)}")
    else:
        parts.append(f"stride 1 throughout; every block has {_shortcut(spec, changes)}")
    if depth > 1 and not spec.plain and (changes or stride != 1):
        parts.append(f"the other blocks have {_shortcut(spec, False)}")
    return "; ".join(parts) + "."


def _shortcut(spec: ResNetSpec, changes: bool) -> str:
    """The shortcut of a block whose shape `changes` or not, by option (sec. 3.3)."""
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
    if spec.preact:
        return (
            "a 1x1 projection shortcut without BN, fed by the block's BN-ReLU "
            "(pre-activation, He et al. 2016; option B)"
        )
    return "a 1x1 projection shortcut (option B: projections only where the shape changes)"
