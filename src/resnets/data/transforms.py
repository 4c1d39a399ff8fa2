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
from resnets.preprocess import FitCrop, Normalize, Preprocess

AUGMENTS = ("pad-crop", "resized-crop", "scale", "none")
TENSOR_AUGMENTS = ("pad-crop", "none")
# Sec. 3.4: "we adopt the fully-convolutional form ... and average the scores at multiple scales
# (images are resized such that the shorter side is in {224, 256, 384, 480, 640})".
MULTI_SCALES = (224, 256, 384, 480, 640)
# The centre crop covers 87.5% of the resized shorter side: 224 of 256, as in the paper's
# single-crop ImageNet evaluation (sec. 3.4) and torchvision's reference transforms.
CROP_FRACTION = 0.875


def eval_resize(size: int) -> int:
    """The shorter side (pixels) an image is resized to before its centre `size` x `size` crop:
    size / 0.875, rounded (224 -> 256, 32 -> 37)."""
    return int(round(size / CROP_FRACTION))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or 0..1 float) images (N, C, H, W) -> float32 (x - mean) / std per channel."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x.div_(255.0)
    shape = (1, -1, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return x.sub_(m).div_(s)


# The principal components of ImageNet's RGB pixel values (0..1 scale) that AlexNet's colour
# augmentation moves along (Krizhevsky et al. 2012, sec. 4.1), as fb.resnet.torch uses them
# (datasets/imagenet.lua): eigenvalues, and eigenvectors as columns.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class Lighting:
    """AlexNet's PCA colour augmentation (Krizhevsky et al. 2012, sec. 4.1; He et al. 2015,
    sec. 3.4: "the standard color augmentation in [21] is used"): add to every pixel of an RGB
    image (3, H, W) on the 0..1 scale the offset eigvec @ (alpha * eigval), alpha ~ N(0, alphastd)
    drawn once per image, as fb.resnet.torch's Lighting(0.1, ...) does."""

    def __init__(
        self,
        alphastd: float,
        eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC,
    ) -> None:
        self.alphastd = alphastd
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.alphastd == 0:
            return image
        alpha = torch.randn(3) * self.alphastd
        offset = self.eigvec @ (alpha * self.eigval)
        return image + offset.to(image.device, image.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f"Lighting(alphastd={self.alphastd})"


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
    mean_image: torch.Tensor | None = None,
    lighting: float = 0.0,
) -> Callable:
    """Training pipeline for decoded RGB images.

    pad-crop: the image fitted to `size` (shorter side resized to it and the centre cropped, an
    image already at `size` left as it is), then a padded random crop (the CIFAR recipe, sec. 4.2);
    resized-crop: Inception-style random-resized crop (the modern recipe);
    scale: the paper's ImageNet scale augmentation (sec. 3.4): the shorter side resized to a
    random length in [256, 480] (for a 224 crop; scaled with `size`), then a random crop;
    none: the evaluation pipeline (shorter side to `resize_size`, centre crop; as is at `size`).
    `lighting` > 0 adds AlexNet's PCA colour noise with that std (`Lighting`) before the
    normalisation, by `mean_image` (size x size) when given, else by `mean`/`std`.
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
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if lighting:
        steps.append(Lighting(lighting))
    if mean_image is not None:  # x - mean_image, as the evaluation pipeline subtracts it
        record = Preprocess((size, size), normalize="per-pixel-mean", mean_image=mean_image)
        steps.append(Normalize(record, 3))
    else:
        steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


def multiscale_sizes(input_size: int) -> tuple[int, ...]:
    """The shorter sides (pixels) of the paper's multi-scale testing for a network trained at
    `input_size`: {224, 256, 384, 480, 640} (sec. 3.4) scaled by input_size / 224."""
    return tuple(round(s * input_size / 224) for s in MULTI_SCALES)


def folder_scale_transform(
    shorter: int, *, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Callable:
    """The whole image with its shorter side resized to `shorter` pixels (no crop), normalised:
    one scale of fully-convolutional multi-scale testing (sec. 3.4)."""
    steps: list[Callable] = [
        v2.ToImage(),
        v2.Resize(shorter, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
    ]
    if mean is not None and std is not None:
        steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)
