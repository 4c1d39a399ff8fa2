"""scikit-learn's bundled handwritten digits: 1,797 8x8 grayscale images, 10 classes, no download.

This is the dataset of the default run. The images are upsampled once, in memory, to
`DIGITS_SIZE` (a CIFAR ResNet downsamples by 4, so 8x8 inputs would leave 2x2 maps in its last
stage); the held-out 20% is a fixed stratified split, the same for every seed.
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

from resnets.data.datasets import ImageData, Split, channel_stats, subset
from resnets.data.split import Earlier, split_tensors
from resnets.errors import DataError

DIGITS_SIZE = 16
DIGITS_VAL_SPLIT = 0.2


def load_digits_data(
    *,
    input_size: int | None = None,
    val_split: float | None = None,
    split_seed: int = 0,
    earlier: Earlier | None = None,
) -> ImageData:
    """The digits at `input_size` (default 16), `val_split` of them held out (default 20%,
    stratified; 0 is refused: digits has no validation part of its own), or a run's `earlier`
    split re-applied."""
    from sklearn.datasets import load_digits

    if val_split == 0:
        raise DataError(
            "--val-split 0 holds out nothing, and digits has no validation part of its own; leave "
            f"--val-split unset ({DIGITS_VAL_SPLIT:.0%} held out) or give a fraction or a count"
        )

    bunch = load_digits()
    size = input_size or DIGITS_SIZE
    # Pixel values are counts 0..16 of ink; scale to 0..255 and resize as float, then quantise.
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    if size != images.shape[-1]:
        images = TF.resize(images, [size, size], antialias=True)
    images = images.round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    whole = Split(labels=labels, images=images)
    classes = [str(d) for d in range(10)]
    val = DIGITS_VAL_SPLIT if val_split is None else val_split
    train_idx, val_idx, record, messages = split_tensors(
        labels,
        images,
        classes,
        val,
        split_seed,
        earlier=earlier,
        name="digits",
    )
    train, val = subset(whole, train_idx), subset(whole, val_idx)
    mean, std = channel_stats(train.images)
    return ImageData(
        name="digits",
        classes=classes,
        train=train,
        val=val,
        mean=mean,
        std=std,
        input_size=size,
        in_channels=1,
        notes={"color": "L", "source": "sklearn.datasets.load_digits (white ink on black, 8x8)"},
        split=record,
        messages=messages,
    )
