"""Synthetic images: each class a fixed random pattern plus noise, for smoke tests and benchmarks.

Learnable on purpose (a model that trains reaches high accuracy in a few epochs), generated from
a fixed seed, so runs on it are as reproducible as on real data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resnets.data.datasets import ImageData, Split, channel_stats, split_indices, subset
from resnets.errors import DataError


def make_synthetic(count: int, classes: int, size: int, seed: int = 0) -> Split:
    """`count` RGB uint8 images of `size`x`size`: a low-frequency template per class, plus noise."""
    if count < 2 or classes < 2 or size < 1:
        raise DataError(
            f"synthetic data needs count >= 2, classes >= 2 and size >= 1, got {count}, {classes}, {size}"
        )
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(classes, 3, 4, 4, generator=gen)
    templates = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.arange(count) % classes
    labels = labels[torch.randperm(count, generator=gen)]
    noise = torch.randn(count, 3, size, size, generator=gen) * 0.15
    images = (templates[labels] + noise).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return Split(labels=labels, images=images)


def load_synthetic(
    *, count: int, classes: int, input_size: int, val_split: float | None, split_seed: int = 0
) -> ImageData:
    whole = make_synthetic(count, classes, input_size)
    train_idx, val_idx = split_indices(whole.labels, val_split or 0.2, split_seed)
    train, val = subset(whole, train_idx), subset(whole, val_idx)
    mean, std = channel_stats(train.images)
    return ImageData(
        name="synthetic",
        classes=[f"class{i}" for i in range(classes)],
        train=train,
        val=val,
        mean=mean,
        std=std,
        input_size=input_size,
        notes={"color": "RGB"},
    )
