"""What a weights file from elsewhere does not say, filled in from what we know about its model.

A torchvision or timm state dict holds tensors only. To predict names from it we need the class
names and the preprocessing it was trained with: a 1000-class ImageNet network gets ImageNet's
classes (bundled, from torchvision's weight metadata), mean/std and torchvision's eval transform
(resize the shorter side to 256, centre-crop 224); a 10-class CIFAR network gets CIFAR-10's.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

from resnets.errors import WeightsError
from resnets.models.resnet import ResNet
from resnets.models.zoo import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from resnets.weights.format import WeightsMeta

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGENET_INPUT, IMAGENET_RESIZE = 224, 256  # torchvision's IMAGENET1K_V1 eval transform (V2 uses 232)


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in label order (torchvision's `meta["categories"]`)."""
    text = (resources.files("resnets") / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line (blank lines ignored), in label order."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read class names ({exc.__class__.__name__})") from None
    if not names:
        raise WeightsError(f"{path}: no class names in it (expected one per line)")
    return names


def default_meta(name: str, model: ResNet) -> WeightsMeta:
    """Metadata for `model` (built as `name`) when its weights file brings none; `extra` says
    where filled-in class names come from ("imagenet-1k", "cifar-10")."""
    spec = model.spec
    meta = WeightsMeta(model=name, spec=spec.to_dict())
    if spec.stem == "cifar":
        meta.mean, meta.std, meta.input_size = list(CIFAR10_MEAN), list(CIFAR10_STD), 32
        if spec.num_classes == len(CIFAR10_CLASSES):
            meta.classes, meta.extra["classes_from"] = list(CIFAR10_CLASSES), "cifar-10"
    else:
        meta.mean, meta.std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        meta.input_size, meta.resize_size = IMAGENET_INPUT, IMAGENET_RESIZE
        if spec.num_classes == len(imagenet_classes()):
            meta.classes, meta.extra["classes_from"] = list(imagenet_classes()), "imagenet-1k"
    if spec.in_channels != len(meta.mean):  # RGB statistics do not describe other inputs
        meta.mean = meta.std = None
    return meta
