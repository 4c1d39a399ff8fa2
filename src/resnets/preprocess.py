"""The evaluation pipeline a network's weights expect, as data, and the one transform built from it.

A `Preprocess` record says how an image becomes the network's input: the input size (H, W), how
the image is brought to it (the shorter side resized to `resize_size`, or to input / `crop_pct` in
timm's convention, then the centre cropped), the interpolation, the colour (RGB or grayscale) and
the normalisation (per channel with mean/std, or the per-pixel mean image subtracted, He et al.
2015, sec. 4.2). Every weights file we write carries one (weights/format.py), recorded from what a
run trained with or from the source a foreign file comes from (weights/sources.py).

`eval_transform(preprocess, in_channels)` is the only place that turns a record into pixels:
`resnets eval` on image folders, `resnets predict`, `Classifier`, the decoding of small image
folders into memory and `export --int8`'s calibration and verification all call it, so they
cannot disagree. An image already at the input size is neither resized nor cropped: 32-px CIFAR
images reach a CIFAR network as they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from resnets.errors import InputError
from resnets.text import size_hw

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
# per-channel: (x - mean) / std per channel; per-pixel-mean: x - the training set's mean image
# (He et al. 2015, sec. 3.4 and 4.2: "with the per-pixel mean subtracted").
NORMALIZATIONS = ("per-channel", "per-pixel-mean")
COLORS = ("RGB", "L")
# Beyond this aspect ratio the long side is cut (around the centre) before resizing: resizing a
# 1x40000 strip to a 224 shorter side would allocate 9 gigapixels only to keep a 224x224 centre.
MAX_ASPECT = 16
_RECORD_KEYS = (
    "input_size",
    "resize_size",
    "crop_pct",
    "interpolation",
    "mean",
    "std",
    "normalize",
    "color",
    "source",
)


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a network input (N, C, H, W); see the module docstring.

    `input_size` is (H, W) in pixels. The image is resized so that its shorter side is
    `resize_size` (torchvision's convention, e.g. 256 for a 224 crop), or input / `crop_pct`
    rounded down (timm's, e.g. 0.875 -> 256), or, with neither, the input size itself (a plain
    fit, crop_pct 1), then the centre (H, W) is cropped. `mean`/`std` are per channel on the
    0..1 scale; with `normalize="per-pixel-mean"` the (C, H, W) `mean_image` (0..1 scale) is
    subtracted instead of `mean` (and `std` divides, when given). `source` says where the record
    comes from ("trained on digits", "torchvision ResNet50_Weights.IMAGENET1K_V2", "assumed: ...").
    """

    input_size: tuple[int, int]
    resize_size: int | None = None
    crop_pct: float | None = None
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: str = "per-channel"
    color: str = "RGB"
    source: str = ""
    mean_image: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        height, width = size_hw(self.input_size)
        object.__setattr__(self, "input_size", (height, width))
        if height < 1 or width < 1:
            raise InputError(f"input size must be positive, got {height}x{width}")
        if self.resize_size is not None and self.resize_size < 1:
            raise InputError(f"resize size must be a positive number of pixels, got {self.resize_size}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise InputError(f"crop fraction (--crop-pct) must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(
                f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}"
            )
        if self.normalize not in NORMALIZATIONS:
            raise InputError(
                f"unknown normalisation {self.normalize!r}; use one of {', '.join(NORMALIZATIONS)}"
            )
        if self.color not in COLORS:
            raise InputError(f"unknown colour {self.color!r}; use one of {', '.join(COLORS)}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))
        if (self.mean is None) != (self.std is None) and self.normalize == "per-channel":
            raise InputError("mean and std go together: give both or neither")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise InputError(f"{len(self.mean)} mean values but {len(self.std)} std values")
        if self.std is not None and min(self.std) <= 0:
            raise InputError(f"std values must be positive, got {list(self.std)}")
        if self.normalize == "per-pixel-mean":
            image = self.mean_image
            if image is None or image.dim() != 3 or tuple(image.shape[1:]) != (height, width):
                raise InputError(
                    f"per-pixel-mean normalisation needs a (C, {height}, {width}) mean image, got "
                    f"{None if image is None else tuple(image.shape)}"
                )
            object.__setattr__(self, "mean_image", image.detach().to("cpu", torch.float32))

    @property
    def square(self) -> bool:
        return self.input_size[0] == self.input_size[1]

    def resize_target(self) -> int | tuple[int, int]:
        """What an image's size is brought to before the centre crop: the shorter side in pixels
        (square inputs), or the (H, W) the image must cover (other inputs)."""
        if self.resize_size is not None:
            return self.resize_size
        pct = self.crop_pct or 1.0
        height, width = self.input_size
        if self.square:
            return math.floor(height / pct + 1e-6)  # timm: floor(img_size / crop_pct)
        return (math.floor(height / pct + 1e-6), math.floor(width / pct + 1e-6))

    def describe(self) -> str:
        """One line: 'resize 256, centre crop 224x224, bilinear, mean (...), std (...)'."""
        height, width = self.input_size
        target = self.resize_target()
        fit = f"shorter side to {target}" if isinstance(target, int) else f"to cover {target[0]}x{target[1]}"
        parts = [f"{fit}, centre crop {height}x{width} (as is at {height}x{width})", self.interpolation]
        if self.color == "L":
            parts.append("grayscale")
        if self.normalize == "per-pixel-mean":
            parts.append("per-pixel mean subtracted")
        elif self.mean is not None:
            parts.append(f"mean {_round(self.mean)}, std {_round(self.std or ())}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (a weights file's `resnets.preprocess`): the fields, the mean image as
        nested lists (C, H, W) when there is one."""
        record: dict[str, Any] = {k: getattr(self, k) for k in _RECORD_KEYS}
        record["input_size"] = list(self.input_size)
        for key in ("mean", "std"):
            if record[key] is not None:
                record[key] = list(record[key])
        if self.mean_image is not None:
            record["mean_image"] = self.mean_image.tolist()
        return record

    @classmethod
    def from_dict(cls, record: Any) -> Preprocess:
        """The inverse of `to_dict`; InputError for a record that is not one."""
        if not isinstance(record, dict) or "input_size" not in record:
            raise InputError("a preprocessing record is a table with at least 'input_size'")
        unknown = sorted(set(record) - {*_RECORD_KEYS, "mean_image"})
        if unknown:
            raise InputError(f"unknown preprocessing field(s): {', '.join(unknown)}")
        values = dict(record)
        if values.get("mean_image") is not None:
            try:
                values["mean_image"] = torch.tensor(values["mean_image"], dtype=torch.float32)
            except (TypeError, ValueError):
                raise InputError("the preprocessing record's mean_image is not a (C, H, W) array") from None
        try:
            return cls(**{k: v for k, v in values.items() if v is not None or k == "mean_image"})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"a malformed preprocessing record ({exc})") from None

    def with_overrides(
        self,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
        input_size: int | tuple[int, int] | None = None,
        resize_size: int | None = None,
    ) -> Preprocess:
        """This record with what the user set (--mean/--std/--crop-pct/--interpolation/
        --input-size/--resize-size); a crop fraction replaces a resize size and vice versa.

        Raises InputError for both a crop fraction and a resize size, or for values no record takes."""
        if crop_pct is not None and resize_size is not None:
            raise InputError("--crop-pct and --resize-size both say how far to resize; give one")
        changes: dict[str, Any] = {}
        if mean is not None:
            changes["mean"] = tuple(mean)
        if std is not None:
            changes["std"] = tuple(std)
        if crop_pct is not None:
            changes.update(crop_pct=crop_pct, resize_size=None)
        if resize_size is not None:
            changes.update(resize_size=resize_size, crop_pct=None)
        if interpolation is not None:
            changes["interpolation"] = interpolation
        if input_size is not None:
            changes["input_size"] = size_hw(input_size)
        if not changes:
            return self
        source = (
            self.source
            if self.source.endswith("(with user settings)")
            else f"{self.source} (with user settings)"
        )
        return replace(self, **changes, source=source.strip())


def legacy_preprocess(
    input_size: int | Sequence[int],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    resize_size: int | None,
    color: str = "RGB",
) -> Preprocess:
    """The record a weights file written before `resnets.preprocess` existed stands for: its
    mean/std/input_size/resize_size, with the bilinear resize those versions used (a shorter side
    resized to `resize_size` and centre-cropped, or without it a plain fit to the input size)."""
    return Preprocess(
        input_size=size_hw(input_size),
        resize_size=resize_size,
        mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
        color=color if color in COLORS else "RGB",
        source="recorded (mean, std, input and resize size)",
    )


# --- the transform --------------------------------------------------------------------------------


def eval_transform(
    preprocess: Preprocess, in_channels: int = 3, *, crops: int = 1, normalize: bool = True
) -> Callable[[Any], torch.Tensor]:
    """The pipeline `preprocess` describes, for one image: an upright RGB PIL image or an image
    tensor (C, H, W), uint8 or 0..1 float, in; the network's float32 input (C, H, W) out, or
    (10, C, H, W) with `crops=10` (the four corners, the centre and their mirror images: the
    paper's 10-crop testing, sec. 3.4).

    Steps: grayscale (ITU-R 601 luma, as PIL) for one-channel networks or a grayscale record; the
    shorter side resized as the record says and the centre cropped, both skipped for an image
    already at the input size (an extreme strip is first cut to MAX_ASPECT); then the
    normalisation. PIL images (files) are resized by PIL, as the evaluation of torchvision's
    reference scripts, timm and the CIFAR reproduction resize their PIL-decoded files; image
    tensors by torchvision's antialiased resize, which agrees with PIL's to a level or two.
    With `normalize=False` the output is the uint8 image at the input size (C, H, W), unnormalised:
    what decoding a folder into memory keeps.

    Raises InputError for `crops` other than 1 or 10.
    """
    if crops not in (1, 10):
        raise InputError(f"eval crops must be 1 or 10, got {crops}")
    gray = in_channels == 1 or preprocess.color == "L"
    steps: list[Callable] = [Luma(in_channels) if gray else v2.RGB()]
    steps += [FitCrop(preprocess, ten_crop=crops == 10), v2.ToImage()]
    if not normalize:
        steps += [v2.ToDtype(torch.uint8, scale=True), _plain]
        return v2.Compose(steps)
    steps += [v2.ToDtype(torch.float32, scale=True), Normalize(preprocess, in_channels)]
    return v2.Compose(steps)


def normalize_batch(
    preprocess: Preprocess, images: torch.Tensor, in_channels: int | None = None
) -> torch.Tensor:
    """uint8 (or 0..1 float) images (N, C, H, W) -> float32 network input, normalised as the
    record says, on the images' device: the in-memory twin of `eval_transform`'s last step."""
    x = images.float()
    if images.dtype == torch.uint8:
        x = x.div_(255.0)
    return Normalize(preprocess, in_channels or x.shape[1])(x)


class FitCrop:
    """Resize as the record says and crop the centre: a PIL image or a (C, H, W) image tensor
    in, the same kind out ((10, C, H, W) uint8 for ten crops). An image already at the input
    size is neither resized nor cropped."""

    def __init__(self, preprocess: Preprocess, ten_crop: bool = False) -> None:
        self.size = preprocess.input_size
        self.target = preprocess.resize_target()
        self.mode = v2.InterpolationMode(preprocess.interpolation)
        self.ten_crop = ten_crop

    def __call__(self, image: Any) -> Any:
        height, width = TF.get_size(image)
        if (height, width) != self.size:
            image = cap_aspect(image, MAX_ASPECT)
            size = self.target if isinstance(self.target, int) else self._cover(*TF.get_size(image))
            image = TF.resize(image, size, interpolation=self.mode, antialias=True)
            if not self.ten_crop:
                image = TF.center_crop(image, list(self.size))
        if self.ten_crop:
            crops = TF.ten_crop(image, list(self.size))
            return torch.stack([_as_tensor(c) for c in crops])
        return image

    def _cover(self, height: int, width: int) -> list[int]:
        """For a non-square input: the smallest size, aspect kept, that covers the target (H, W)
        (a square input's target is a shorter side, resized by torchvision's own rule)."""
        assert not isinstance(self.target, int)
        scale = max(self.target[0] / height, self.target[1] / width)
        return [max(self.size[0], round(height * scale)), max(self.size[1], round(width * scale))]


class Normalize:
    """The record's normalisation of a float (…, C, H, W) tensor on the 0..1 scale."""

    def __init__(self, preprocess: Preprocess, in_channels: int) -> None:
        self.preprocess, self.in_channels = preprocess, in_channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.preprocess
        if p.normalize == "per-pixel-mean":
            assert p.mean_image is not None  # checked by Preprocess
            x = x - p.mean_image.to(x.device, x.dtype)
            if p.std is not None:
                x = x / _per_channel(p.std, self.in_channels, x)
            return x
        if p.mean is None or p.std is None:
            return x
        return (x - _per_channel(p.mean, self.in_channels, x)) / _per_channel(p.std, self.in_channels, x)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """A normalised (…, C, H, W) tensor back on the 0..1 scale (what `__call__` undoes)."""
        p = self.preprocess
        if p.normalize == "per-pixel-mean":
            assert p.mean_image is not None  # checked by Preprocess
            if p.std is not None:
                x = x * _per_channel(p.std, self.in_channels, x)
            return x + p.mean_image.to(x.device, x.dtype)
        if p.mean is None or p.std is None:
            return x
        return x * _per_channel(p.std, self.in_channels, x) + _per_channel(p.mean, self.in_channels, x)


def _per_channel(values: Sequence[float], channels: int, like: torch.Tensor) -> torch.Tensor:
    """Per-channel statistics as a (C, 1, 1) tensor; one value stands for every channel.

    Raises InputError when there are neither one nor `channels` values."""
    if len(values) not in (1, channels):
        raise InputError(f"{len(values)} mean/std values for a {channels}-channel input")
    v = torch.as_tensor(list(values), dtype=like.dtype, device=like.device)
    return v.expand(channels).reshape(-1, 1, 1) if len(v) == 1 else v.view(-1, 1, 1)


class Luma:
    """Grayscale by ITU-R 601-2 luma, as PIL's convert("L") computes it, for PIL images and image
    tensors alike, with `channels` output channels.

    torchvision's Grayscale weighs 0.2989 + 0.587 + 0.114 < 1 and truncates, so a gray pixel of a
    uint8 tensor can come out one level darker than the same pixel read from a file; here a gray
    image gives the same input whichever way it arrives.
    """

    def __init__(self, channels: int = 1) -> None:
        self.channels = channels

    def __call__(self, image: Any) -> Any:
        if isinstance(image, Image.Image):
            gray = image.convert("L")
            return gray if self.channels == 1 else gray.convert("RGB")
        if image.shape[-3] == 3:
            r, g, b = image.unbind(-3)
            if image.dtype == torch.uint8:
                # PIL's fixed point: (R*19595 + G*38470 + B*7471 + 2**15) >> 16, weights summing to 2**16.
                y = (r.int() * 19595 + g.int() * 38470 + b.int() * 7471 + 32768) >> 16
                image = y.to(torch.uint8).unsqueeze(-3)
            else:
                image = (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)
        return image.expand(*image.shape[:-3], self.channels, *image.shape[-2:]).contiguous()


def cap_aspect(image: Any, max_aspect: float) -> Any:
    """Cut the long side (around the centre) to `max_aspect` times the short side, so that
    resizing an extreme strip keeps memory bounded; images within the ratio pass untouched."""
    height, width = TF.get_size(image)
    longest = int(min(height, width) * max_aspect)
    if max(height, width) <= longest:
        return image
    return TF.center_crop(image, [min(height, longest), min(width, longest)])


def _as_tensor(image: Any) -> torch.Tensor:
    return image if isinstance(image, torch.Tensor) else TF.pil_to_tensor(image)


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


def _round(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
