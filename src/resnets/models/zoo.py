"""The named networks, as a table that reads like paper Table 1 (and Table 6 for CIFAR).

Each row gives the block, the blocks per stage and what differs from the family's defaults.
Per-model facts that the summary, the docs and the tests read (family, input size,
preprocessing, source) live here too, as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnets.models.spec import ResNetSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelInfo:
    """One named network: its spec, family ("imagenet" or "cifar"), the input size in pixels and
    the per-channel mean/std (on 0-1 pixel values) it was designed for, and where it comes from."""

    name: str
    spec: ResNetSpec
    family: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str


# The two families of the paper: ImageNet (sec. 3.4, Table 1) and CIFAR-10 (sec. 4.2).
IMAGENET = dict(stem="imagenet", widths=(64, 128, 256, 512), shortcut="B", num_classes=1000)
CIFAR = dict(stem="cifar", widths=(16, 32, 64), shortcut="A", num_classes=10)

B18, B34 = (2, 2, 2, 2), (3, 4, 6, 3)
B50, B101, B152 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)


def cifar_depths(n: int) -> tuple[int, int, int]:
    """Sec. 4.2: 6n+2 layers, n basic blocks per stage (and 9n+2 for bottlenecks)."""
    return (n, n, n)


# He et al. 2016's CIFAR bottleneck networks (ResNet-164, ResNet-1001) as the authors' code builds
# them (github.com/KaimingHe/resnet-1k-layers, resnet-pre-act.lua): 16-64-128-256 channels, a
# bare 1x1 projection in the first unit of each stage, the stride on the first 1x1 conv.
PREACT_1K: dict[str, Any] = {"preact": True, "shortcut": "B", "stride_on": "1x1"}


_ROWS: list[tuple[str, str, str, tuple[int, ...], dict[str, Any], str]] = [
    # name               family        block         depths           changes from the family    source
    ("resnet18",         "imagenet",   "basic",      B18,   {},                                   "He et al. 2015, Table 1; torchvision"),
    ("resnet34",         "imagenet",   "basic",      B34,   {},                                   "He et al. 2015, Table 1; torchvision"),
    ("resnet50",         "imagenet",   "bottleneck", B50,   {},                                   "He et al. 2015, Table 1; torchvision (v1.5)"),
    ("resnet101",        "imagenet",   "bottleneck", B101,  {},                                   "He et al. 2015, Table 1; torchvision (v1.5)"),
    ("resnet152",        "imagenet",   "bottleneck", B152,  {},                                   "He et al. 2015, Table 1; torchvision (v1.5)"),
    ("resnet50_v1",      "imagenet",   "bottleneck", B50,   {"stride_on": "1x1"},                 "He et al. 2015, Table 1 (stride on the first 1x1)"),
    ("resnet101_v1",     "imagenet",   "bottleneck", B101,  {"stride_on": "1x1"},                 "He et al. 2015, Table 1 (stride on the first 1x1)"),
    ("resnet152_v1",     "imagenet",   "bottleneck", B152,  {"stride_on": "1x1"},                 "He et al. 2015, Table 1 (stride on the first 1x1)"),
    ("resnet20",         "cifar",      "basic",      cifar_depths(3),   {},                       "He et al. 2015, sec. 4.2, Table 6"),
    ("resnet32",         "cifar",      "basic",      cifar_depths(5),   {},                       "He et al. 2015, sec. 4.2, Table 6"),
    ("resnet44",         "cifar",      "basic",      cifar_depths(7),   {},                       "He et al. 2015, sec. 4.2, Table 6"),
    ("resnet56",         "cifar",      "basic",      cifar_depths(9),   {},                       "He et al. 2015, sec. 4.2, Table 6"),
    ("resnet110",        "cifar",      "basic",      cifar_depths(18),  {},                       "He et al. 2015, sec. 4.2, Table 6"),
    ("resnet1202",       "cifar",      "basic",      cifar_depths(200), {},                       "He et al. 2015, sec. 4.2, Table 6"),
    ("plain18",          "imagenet",   "basic",      B18,   {"plain": True},                      "He et al. 2015, Fig. 4 left (plain baseline)"),
    ("plain34",          "imagenet",   "basic",      B34,   {"plain": True},                      "He et al. 2015, Fig. 3 middle (plain baseline)"),
    ("plain20",          "cifar",      "basic",      cifar_depths(3),   {"plain": True},          "He et al. 2015, Fig. 6 left (plain baseline)"),
    ("plain32",          "cifar",      "basic",      cifar_depths(5),   {"plain": True},          "He et al. 2015, Fig. 6 left (plain baseline)"),
    ("plain44",          "cifar",      "basic",      cifar_depths(7),   {"plain": True},          "He et al. 2015, Fig. 6 left (plain baseline)"),
    ("plain56",          "cifar",      "basic",      cifar_depths(9),   {"plain": True},          "He et al. 2015, Fig. 6 left (plain baseline)"),
    ("plain110",         "cifar",      "basic",      cifar_depths(18),  {"plain": True},          "He et al. 2015, sec. 4.2 (plain baseline)"),
    ("preact_resnet18",  "imagenet",   "basic",      B18,   {"preact": True},                     "He et al. 2016 (pre-activation)"),
    ("preact_resnet34",  "imagenet",   "basic",      B34,   {"preact": True},                     "He et al. 2016 (pre-activation)"),
    ("preact_resnet50",  "imagenet",   "bottleneck", B50,   {"preact": True},                     "He et al. 2016 (pre-activation)"),
    ("preact_resnet101", "imagenet",   "bottleneck", B101,  {"preact": True},                     "He et al. 2016 (pre-activation)"),
    ("preact_resnet152", "imagenet",   "bottleneck", B152,  {"preact": True},                     "He et al. 2016 (pre-activation)"),
    ("preact_resnet20",  "cifar",      "basic",      cifar_depths(3),   {"preact": True, "shortcut": "B"},  "He et al. 2016 (pre-activation, CIFAR)"),
    ("preact_resnet56",  "cifar",      "basic",      cifar_depths(9),   {"preact": True, "shortcut": "B"},  "He et al. 2016 (pre-activation, CIFAR)"),
    ("preact_resnet110", "cifar",      "basic",      cifar_depths(18),  {"preact": True, "shortcut": "B"},  "He et al. 2016, Table 2 (pre-activation, CIFAR)"),
    ("preact_resnet164", "cifar",      "bottleneck", cifar_depths(18),  PREACT_1K,                          "He et al. 2016, Table 2 (pre-activation bottleneck, CIFAR); resnet-1k-layers"),
    ("preact_resnet1001", "cifar",     "bottleneck", cifar_depths(111), PREACT_1K,                          "He et al. 2016, Table 2 (pre-activation bottleneck, CIFAR); resnet-1k-layers"),
    ("resnet50b",        "imagenet",   "bottleneck", B50,   {},                                   "Bag of Tricks ResNet-B = stride on the 3x3 (same as resnet50)"),
    ("resnet50c",        "imagenet",   "bottleneck", B50,   {"stem": "deep"},                     "Bag of Tricks ResNet-C (deep stem); timm"),
    ("resnet18d",        "imagenet",   "basic",      B18,   {"stem": "deep", "avg_down": True},   "Bag of Tricks ResNet-D; timm"),
    ("resnet34d",        "imagenet",   "basic",      B34,   {"stem": "deep", "avg_down": True},   "Bag of Tricks ResNet-D; timm"),
    ("resnet50d",        "imagenet",   "bottleneck", B50,   {"stem": "deep", "avg_down": True},   "Bag of Tricks ResNet-D; timm"),
    ("resnet101d",       "imagenet",   "bottleneck", B101,  {"stem": "deep", "avg_down": True},   "Bag of Tricks ResNet-D; timm"),
    ("resnet152d",       "imagenet",   "bottleneck", B152,  {"stem": "deep", "avg_down": True},   "Bag of Tricks ResNet-D; timm"),
    ("wide_resnet50_2",  "imagenet",   "bottleneck", B50,   {"width_per_group": 128},             "Zagoruyko & Komodakis 2016; torchvision"),
    ("wide_resnet101_2", "imagenet",   "bottleneck", B101,  {"width_per_group": 128},             "Zagoruyko & Komodakis 2016; torchvision"),
    ("resnext50_32x4d",  "imagenet",   "bottleneck", B50,   {"groups": 32, "width_per_group": 4}, "Xie et al. 2017; torchvision"),
    ("resnext101_32x8d", "imagenet",   "bottleneck", B101,  {"groups": 32, "width_per_group": 8}, "Xie et al. 2017; torchvision"),
    ("resnext101_64x4d", "imagenet",   "bottleneck", B101,  {"groups": 64, "width_per_group": 4}, "Xie et al. 2017; torchvision"),
]  # fmt: skip

_FAMILIES = {
    "imagenet": (IMAGENET, 224, IMAGENET_MEAN, IMAGENET_STD),
    "cifar": (CIFAR, 32, CIFAR10_MEAN, CIFAR10_STD),
}
# How each family's images are prepared for evaluation, in timm's terms: the centre crop's share
# of the resized image and the resize filter. ImageNet: torchvision's resize to 256, centre crop
# 224, bilinear (224 / 256 = 0.875; sec. 3.4 tests on 224 crops); CIFAR: the 32-px image as is.
_EVAL = {"imagenet": (0.875, "bilinear"), "cifar": (1.0, "bilinear")}


def _build_zoo() -> dict[str, ModelInfo]:
    zoo = {}
    for name, family, block, depths, changes, source in _ROWS:
        defaults, size, mean, std = _FAMILIES[family]
        spec = ResNetSpec(block=block, depths=depths, **{**defaults, **changes})
        zoo[name] = ModelInfo(name, spec, family, size, mean, std, source)
    return zoo


ZOO: dict[str, ModelInfo] = _build_zoo()


def default_input_size(spec: ResNetSpec) -> int:
    """The resolution a network was designed for: 32 px for the CIFAR stem, 224 px otherwise."""
    return 32 if spec.stem == "cifar" else 224


def pretrained_cfg(spec: ResNetSpec, name: str) -> dict[str, Any]:
    """What a network expects of its input, as timm's `pretrained_cfg` says it (timm's keys):
    `input_size` (C, H, W) in pixels, `crop_pct` (centre crop / resized image) and `crop_mode`,
    `interpolation`, per-channel `mean`/`std` on 0-1 pixel values, `pool_size` (the last map at
    that size), `num_classes`, `first_conv` and `classifier` (module names), `architecture`.

    The values are the family's (the CIFAR stem's: CIFAR-10, 32 px; any other: ImageNet,
    224 px); a network with other than 3 input channels gets the RGB statistics averaged per
    channel. Weights trained elsewhere record their own preprocessing.
    """
    family = "cifar" if spec.stem == "cifar" else "imagenet"
    _, size, mean, std = _FAMILIES[family]
    crop_pct, interpolation = _EVAL[family]
    if spec.in_channels != len(mean):
        mean = (sum(mean) / len(mean),) * spec.in_channels
        std = (sum(std) / len(std),) * spec.in_channels
    pool = -(-size // spec.total_stride)
    return {
        "architecture": name,
        "num_classes": spec.num_classes,
        "input_size": (spec.in_channels, size, size),
        "pool_size": (pool, pool),
        "crop_pct": crop_pct,
        "crop_mode": "center",
        "interpolation": interpolation,
        "mean": tuple(mean),
        "std": tuple(std),
        "first_conv": "conv1.0" if spec.stem == "deep" else "conv1",
        "classifier": "fc",
    }


def variant(spec: ResNetSpec) -> str:
    """A short label for how a network differs from the paper's ResNet."""
    if spec.plain:
        return "plain"
    if spec.preact:
        return "pre-activation"
    if spec.groups > 1:
        return "ResNeXt"
    if spec.width_per_group > 64:
        return "wide"
    if spec.avg_down:
        return "ResNet-D"
    if spec.stem == "deep":
        return "ResNet-C"
    if spec.block == "bottleneck":
        return "v1 (paper)" if spec.stride_on == "1x1" else "v1.5"
    return "paper"
