"""What every data source produces: `ImageData`, two splits plus what the model needs to know.

Small datasets (digits, synthetic, CIFAR) arrive as uint8 tensors that stay in memory (and on
the GPU when training there); folders arrive as lists of files decoded on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from resnets.data.split import SplitRecord, hold_out
from resnets.data.walk import Skipped
from resnets.preprocess import Preprocess


@dataclass
class Split:
    """One split: uint8 `images` (N, C, H, W) with `labels`, or image `files` with `labels`."""

    labels: torch.Tensor
    images: torch.Tensor | None = None
    files: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def in_memory(self) -> bool:
        return self.images is not None


@dataclass
class ImageData:
    """A dataset ready to train on: splits, class names and the preprocessing that goes with them.

    `input_size` is the training resolution; `resize_size` (folders only) is the shorter side an
    evaluation image is resized to before the centre crop. `mean`/`std` are per channel, on the
    0..1 scale, measured on the training split unless the dataset has published ones.
    `mean_image` (C, H, W), on the 0..1 scale, is set for per-pixel mean subtraction (He et al.
    2015, sec. 3.4 and 4.2: inputs are x - mean_image, not divided by a std); `mean`/`std` then
    hold its per-channel means and ones, what a reader that knows only mean/std comes closest with.
    `passed_over` (folders only) is what the walk over the folders left out, and why. `split`
    is the record of how train and val were made (split.py), which a run writes to split.json;
    `messages` are one-line notes for the user (a class too small to split, a changed folder).
    """

    name: str
    classes: list[str]
    train: Split
    val: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    in_channels: int = 3
    resize_size: int | None = None
    notes: dict[str, str] = field(default_factory=dict)
    passed_over: list[Skipped] = field(default_factory=list)
    split: SplitRecord | None = None
    messages: list[str] = field(default_factory=list)
    mean_image: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocess(self) -> Preprocess:
        """The evaluation pipeline of this data as trained on: images fitted to `input_size`
        (shorter side to `resize_size` and the centre cropped, when set; as they are at the input
        size), normalised with `mean`/`std`. What a run records in its weights."""
        size = self.input_size
        return Preprocess(
            input_size=(size, size),
            resize_size=self.resize_size,
            mean=tuple(self.mean),
            std=tuple(self.std),
            normalize="per-pixel-mean" if self.mean_image is not None else "per-channel",
            mean_image=self.mean_image,
            color="L" if self.notes.get("color") == "L" else "RGB",
            source=f"trained on {self.name}",
        )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), on the 0..1 scale."""
    x = images.to(torch.float64).div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-3).tolist())


def pixel_mean(images: torch.Tensor) -> torch.Tensor:
    """The per-pixel mean (C, H, W) of uint8 images (N, C, H, W), float32 on the 0..1 scale: the
    mean image subtracted from every input by per-pixel mean normalisation (sec. 4.2)."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for chunk in images.split(4096):  # float64 sums a chunk at a time: no full-size float copy
        total += chunk.sum(0, dtype=torch.float64)
    return (total / (255.0 * max(1, images.shape[0]))).float()


def split_indices(labels: torch.Tensor, val: float | int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, stratified train/val split (split.hold_out): `val` is a fraction (< 1) or a count
    of held-out images; the same `seed` gives the same split. Returns sorted index tensors."""
    classes = [str(c) for c in range(int(labels.max()) + 1)] if len(labels) else []
    plan = hold_out(labels, val, seed, classes)
    return plan.train, plan.val


def subset(split: Split, index: torch.Tensor) -> Split:
    files = [split.files[i] for i in index.tolist()] if split.files is not None else None
    images = split.images[index] if split.images is not None else None
    return Split(labels=split.labels[index], images=images, files=files)
