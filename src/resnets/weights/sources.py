"""What a weights file from elsewhere does not say, and we know: class names and preprocessing.

A torchvision or timm state dict holds tensors only. To predict names from it we need the class
names and the preprocessing it was trained with: a 1000-class ImageNet network gets ImageNet's
classes (bundled, from torchvision's weight metadata) and torchvision's eval transform (resize
the shorter side to 256, centre-crop 224); a 10-class CIFAR network gets CIFAR-10's.
`format.meta_for_model` puts these into a model's metadata; user-given names come from
`read_class_names`.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

from resnets.errors import WeightsError

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
