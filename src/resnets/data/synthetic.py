"""Synthetic images: each class a fixed random pattern plus noise, for smoke tests and benchmarks.

Learnable on purpose (a model that trains reaches high accuracy in a few epochs), generated from
a fixed seed, so runs on it are as reproducible as on real data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from resnets.data.datasets import ImageData, Split, channel_stats, subset
from resnets.data.split import Earlier, split_tensors
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
    *,
    count: int,
    classes: int,
    input_size: int,
    val_split: float | None,
    split_seed: int = 0,
    earlier: Earlier | None = None,
) -> ImageData:
    """`count` synthetic images of `classes` classes, `val_split` held out (default 20%; 0 is
    refused: there is no other validation part), or a run's `earlier` split re-applied."""
    if val_split == 0:
        raise DataError(
            "--val-split 0 holds out nothing, and synthetic data has no validation part of its own; "
            "leave --val-split unset (20% held out) or give a fraction or a count"
        )
    whole = make_synthetic(count, classes, input_size)
    names = [f"class{i}" for i in range(classes)]
    assert whole.images is not None
    train_idx, val_idx, record, messages = split_tensors(
        whole.labels,
        whole.images,
        names,
        0.2 if val_split is None else val_split,
        split_seed,
        earlier=earlier,
        name="synthetic data",
    )
    train, val = subset(whole, train_idx), subset(whole, val_idx)
    mean, std = channel_stats(train.images)
    return ImageData(
        name="synthetic",
        classes=names,
        train=train,
        val=val,
        mean=mean,
        std=std,
        input_size=input_size,
        notes={"color": "RGB"},
        split=record,
        messages=messages,
    )
