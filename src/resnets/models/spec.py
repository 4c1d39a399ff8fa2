"""ResNetSpec: every architectural choice of the ResNet family in one frozen dataclass.

A spec is plain data (JSON-able), so it can be printed, stored next to weights and rebuilt
exactly. The builder in `resnet.py` reads nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from resnets.errors import SpecError

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "cifar", "deep")
SHORTCUTS = ("A", "B", "C")
STRIDE_ON = ("3x3", "1x1")


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet, described the way papers describe them.

    block, depths, widths: paper Table 1 — the block type, how many blocks per stage and the
        stage width (the 3x3 filters; a bottleneck outputs 4x this).
    stem: "imagenet" (7x7/2 conv + 3x3/2 max pool, sec. 3.4), "cifar" (one 3x3 conv, sec. 4.2)
        or "deep" (three 3x3 convs then max pool: ResNet-C/D, Bag of Tricks sec. 4.1).
    stem_width: filters of the deep stem's first two convs (its last conv outputs widths[0]);
        scaled by width_multiplier like the stages.
    shortcut: "A" zero-padding identity, "B" projection only when the shape changes, "C"
        projection everywhere (He et al. 2015, sec. 3.3).
    stride_on: where a bottleneck downsamples — "1x1" as in the paper (v1), or "3x3" as in
        torchvision and most later work (v1.5, ResNet-B).
    avg_down: downsample shortcuts with a 2x2 average pool before the 1x1 conv (ResNet-D).
    groups, width_per_group: ResNeXt cardinality and width; width_per_group=128 gives the
        wide ResNets of torchvision. Bottleneck inner width = width * width_per_group/64 * groups.
    preact: pre-activation blocks, BN-ReLU before each conv (He et al. 2016).
    plain: no shortcuts at all: the paper's plain baselines (Fig. 3, 4, 6).
    width_multiplier: a multiplier on every stage width and on the stem (rounded, at least 1
        channel); 1/16 keeps a network's wiring at a fraction of its cost.
    drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
    zero_init_residual: start each residual branch at zero (Goyal et al. 2017).
    num_classes: outputs of the fc layer; 0 leaves the network headless (fc = Identity), so it
        returns the pooled (N, num_features) features (timm's convention).
    output_stride: how much the network shrinks its input, when less than its own total stride
        (32 for ImageNet stems, 4 for CIFAR): the last stages keep their resolution and dilate
        their 3x3 convs instead of striding (torchvision's `replace_stride_with_dilation`, timm's
        `output_stride`; Chen et al. 2017, DeepLab). 8 dilates conv4_x by 2 and conv5_x by 4, 16
        conv5_x by 2. None (the default, and what the total stride itself normalises to) is the
        undilated network.
    """

    block: str
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem: str = "imagenet"
    stem_width: int = 32
    shortcut: str = "B"
    stride_on: str = "3x3"
    avg_down: bool = False
    groups: int = 1
    width_per_group: int = 64
    preact: bool = False
    plain: bool = False
    num_classes: int = 1000
    in_channels: int = 3
    width_multiplier: float = 1.0
    drop_path_rate: float = 0.0
    zero_init_residual: bool = False
    output_stride: int | None = None

    def __post_init__(self) -> None:
        """Normalise depths/widths to int tuples and refuse inconsistent specs with SpecError."""
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        _check_choice("block", self.block, BLOCKS)
        _check_choice("stem", self.stem, STEMS)
        _check_choice("shortcut", self.shortcut, SHORTCUTS)
        _check_choice("stride_on", self.stride_on, STRIDE_ON)
        if not self.depths or len(self.depths) != len(self.widths):
            raise SpecError(
                f"depths {self.depths} and widths {self.widths} must be non-empty and of equal length"
            )
        for name, values in (("depths", self.depths), ("widths", self.widths)):
            if any(v < 1 for v in values):
                raise SpecError(f"{name} must all be >= 1, got {values}")
        for name in ("groups", "width_per_group", "in_channels", "stem_width"):
            if getattr(self, name) < 1:
                raise SpecError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_classes < 0:
            raise SpecError(f"num_classes must be >= 0 (0: no classifier), got {self.num_classes}")
        self._check_output_stride()
        if self.width_multiplier <= 0:
            raise SpecError(f"width_multiplier must be > 0, got {self.width_multiplier}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise SpecError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.block == "basic" and (self.groups != 1 or self.width_per_group != 64):
            raise SpecError("groups and width_per_group apply to bottleneck blocks only")
        if min(self.inner_widths) < self.groups:
            raise SpecError(
                f"the 3x3 convs would have {self.inner_widths} filters, fewer than {self.groups} "
                f"groups x 1; raise width_multiplier (now {self.width_multiplier}) or width_per_group"
            )
        if self.shortcut == "A" and not self.plain:
            outs = [self.stem_channels, *self.out_channels]
            if any(b < a for a, b in zip(outs, outs[1:])):
                raise SpecError(
                    f"shortcut 'A' can only add channels by zero-padding; stage outputs {outs} shrink"
                )

    def _check_output_stride(self) -> None:
        """Refuse an output stride the stages cannot give; store the undilated one as None."""
        if self.output_stride is None:
            return
        natural = self.stem_stride * 2 ** (len(self.depths) - 1)
        allowed = [self.stem_stride * 2**k for k in range(len(self.depths))]
        if not isinstance(self.output_stride, int) or self.output_stride not in allowed:
            raise SpecError(
                f"output_stride must be one of {', '.join(map(str, allowed))} for this network "
                f"(a stride of 2 per stage after the stem), got {self.output_stride}"
            )
        if self.output_stride == natural:
            object.__setattr__(self, "output_stride", None)

    @property
    def expansion(self) -> int:
        """Output channels per stage width: 1 for basic blocks, 4 for bottlenecks (sec. 4.1)."""
        return 4 if self.block == "bottleneck" else 1

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """`widths` times `width_multiplier`: the filters of each stage's basic-block convs."""
        return tuple(_scale(w, self.width_multiplier) for w in self.widths)

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels each stage outputs: stage width x expansion (Table 1's last conv of a block)."""
        return tuple(w * self.expansion for w in self.stage_widths)

    @property
    def inner_widths(self) -> tuple[int, ...]:
        """Filters of each stage's 3x3 convs (grouped for ResNeXt, widened for wide ResNets)."""
        if self.block == "basic":
            return self.stage_widths
        return tuple(int(w * self.width_per_group / 64) * self.groups for w in self.stage_widths)

    @property
    def stem_channels(self) -> int:
        """Channels the stem outputs: the first stage's width (64 in Table 1, 16 in sec. 4.2)."""
        return self.stage_widths[0]

    @property
    def deep_stem_width(self) -> int:
        """Filters of the deep stem's first two 3x3 convs (ResNet-C/D), scaled like the stages."""
        return _scale(self.stem_width, self.width_multiplier)

    @property
    def stage_strides(self) -> tuple[int, ...]:
        """The first stage keeps the stem's resolution; each later stage halves it, unless
        `output_stride` has it dilate instead (stride 1)."""
        return tuple(s for s, _ in self._strides_and_dilations())

    @property
    def stage_dilations(self) -> tuple[int, ...]:
        """The dilation of each stage's 3x3 convs: 1 everywhere unless `output_stride` is set;
        a dilated stage multiplies the dilation by the stride it gives up (torchvision's rule)."""
        return tuple(d for _, d in self._strides_and_dilations())

    def _strides_and_dilations(self) -> list[tuple[int, int]]:
        reduction, dilation, out = self.stem_stride, 1, []
        for stride in (1,) + (2,) * (len(self.depths) - 1):
            if self.output_stride is not None and reduction * stride > self.output_stride:
                dilation, stride = dilation * stride, 1
            reduction *= stride
            out.append((stride, dilation))
        return out

    @property
    def stem_stride(self) -> int:
        """Downsampling by the stem: 4 (conv1 stride 2 + max pool stride 2, sec. 3.4), 1 for CIFAR."""
        return 1 if self.stem == "cifar" else 4

    @property
    def total_stride(self) -> int:
        """How much the network shrinks its input: 32 for ImageNet ResNets, 4 for CIFAR ones
        (`output_stride` when that is set)."""
        return self.output_stride or self.stem_stride * 2 ** (len(self.depths) - 1)

    @property
    def num_layers(self) -> int:
        """The paper's depth: weighted layers on the main path (stem conv + block convs + fc)."""
        per_block = 3 if self.block == "bottleneck" else 2
        return 1 + per_block * sum(self.depths) + 1

    def replace(self, **overrides: Any) -> ResNetSpec:
        """A copy with `overrides` (field names) applied; None values are ignored, so unset CLI
        flags keep defaults. Raises SpecError for unknown fields (listing the valid ones) and for
        values the spec refuses."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise SpecError(f"unknown model option(s) {', '.join(unknown)}; valid options: {valid}")
        return dataclasses.replace(self, **given)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (tuples as lists); `from_dict` rebuilds the same spec."""
        data = dataclasses.asdict(self)
        data["depths"] = list(self.depths)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetSpec:
        """The spec stored in a weights file or config (`to_dict`'s output).

        Files written before the multiplier was named `width_multiplier` store it as "width";
        both read the same. Raises SpecError for unknown fields, missing ones or bad values.
        """
        data = dict(data)
        if "width" in data:
            if "width_multiplier" in data:
                raise SpecError("spec gives both 'width' and 'width_multiplier'; keep 'width_multiplier'")
            data["width_multiplier"] = data.pop("width")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s) {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"incomplete model spec: {exc}") from None


def _scale(width: int, multiplier: float) -> int:
    return max(1, int(round(width * multiplier)))


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
