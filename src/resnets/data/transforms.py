"""Training augmentation and normalisation: batched tensor ops for in-memory data, torchvision v2
for files.

In-memory data is augmented a whole batch at a time on the device it lives on (one gather per
batch instead of per-sample Python), with offsets drawn from a seeded generator, so a batch is a
function of (seed, epoch, batch index) on any device. Folder images go through torchvision v2
pipelines in DataLoader workers. Evaluation has one pipeline for everything, built from a
`Preprocess` record: resnets.preprocess.eval_transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

from resnets.errors import DataError
from resnets.preprocess import FitCrop, Preprocess

AUGMENTS = ("pad-crop", "resized-crop", "scale", "none")
TENSOR_AUGMENTS = ("pad-crop", "none")
# The centre crop covers 87.5% of the resized shorter side: 224 of 256, as in the paper's
# single-crop ImageNet evaluation (sec. 3.4) and torchvision's reference transforms.
CROP_FRACTION = 0.875


def eval_resize(size: int) -> int:
    """The shorter side (pixels) an image is resized to before its centre `size` x `size` crop:
    size / 0.875, rounded (224 -> 256, 32 -> 37)."""
    return int(round(size / CROP_FRACTION))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or 0..1 float) images -> float32 (x - mean) / std per channel."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x.div_(255.0)
    shape = (1, -1, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return x.sub_(m).div_(s)


def check_tensor_augment(augment: str) -> None:
    if augment not in TENSOR_AUGMENTS:
        raise DataError(
            f"augment '{augment}' needs image files (an ImageFolder); in-memory datasets take "
            f"{' or '.join(TENSOR_AUGMENTS)}"
        )


def folder_train_transform(
    augment: str,
    size: int,
    *,
    pad: int,
    flip: bool,
    mean: Sequence[float],
    std: Sequence[float],
    resize_size: int | None = None,
) -> Callable:
    """Training pipeline for decoded RGB images.

    pad-crop: the image fitted to `size` (shorter side resized to it and the centre cropped, an
    image already at `size` left as it is), then a padded random crop (the CIFAR recipe, sec. 4.2);
    resized-crop: Inception-style random-resized crop (the modern recipe);
    scale: the paper's ImageNet scale augmentation (sec. 3.4): the shorter side resized to a
    random length in [256, 480] (for a 224 crop; scaled with `size`), then a random crop;
    none: the evaluation pipeline (shorter side to `resize_size`, centre crop; as is at `size`).
    """
    if augment not in AUGMENTS:
        raise DataError(f"unknown augment {augment!r}; use one of {', '.join(AUGMENTS)}")
    steps: list[Callable] = [v2.ToImage()]
    if augment == "pad-crop":
        steps += [FitCrop(Preprocess((size, size))), v2.RandomCrop(size, padding=pad)]
    elif augment == "resized-crop":
        steps += [v2.RandomResizedCrop(size, antialias=True)]
    elif augment == "scale":
        low, high = round(size * 256 / 224), round(size * 480 / 224)
        steps += [v2.RandomShortestSize(list(range(low, high + 1)), antialias=True), v2.RandomCrop(size)]
    else:
        steps.append(FitCrop(Preprocess((size, size), resize_size=resize_size)))
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)
