"""Classifying images with a trained network: `Classifier` (the API) and what `resnets predict` runs.

A weights file carries its preprocessing (input size, resize size, mean/std, colour), so the
same pixels reach the network as in training and evaluation: the shorter side resized, the
centre cropped, grayscale for networks trained on one channel, normalised with the training
statistics. The network itself runs through `resnets.optimize(mode="infer")`, the fast path
(BN folded into the convolutions, channels-last, compiled on CUDA).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from resnets.data.images import open_rgb, upright_rgb
from resnets.data.transforms import SubtractMeanImage
from resnets.errors import InputError, ResNetsError, WeightsError
from resnets.models.zoo import ZOO
from resnets.runtime.optimize import optimize
from resnets.text import size_hw
from resnets.weights.format import WeightsMeta
from resnets.weights.load import load_model

ImageInput = str | os.PathLike | Image.Image | torch.Tensor

# Beyond this aspect ratio the long side is cut (around the centre) before resizing: resizing a
# 1x40000 strip to a 224 shorter side would allocate 9 gigapixels only to keep a 224x224 centre.
MAX_ASPECT = 16


class Prediction(NamedTuple):
    """One of an image's top-k classes."""

    label: str
    probability: float


@dataclass
class FileResult:
    """What `Classifier.classify_files` says about one file: its top-k, or why it was skipped."""

    file: str
    predictions: list[Prediction] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        assert self.predictions is not None
        return {
            "file": self.file,
            "topk": [{"class": p.label, "probability": p.probability} for p in self.predictions],
        }


class Classifier:
    """Top-k classes for images, with the preprocessing recorded in the weights' metadata.

    >>> clf = Classifier("runs/resnet20-digits-...")        # a run directory or .safetensors
    >>> clf.predict(["seven.png", pil_image, uint8_tensor], topk=3)
    [[Prediction(label='7', probability=0.98), ...], ...]

    Images may be paths (any format PIL reads, EXIF orientation honoured), PIL images of any
    mode, or image tensors (C, H, W) / (N, C, H, W), uint8 in 0..255 or float in 0..1, as
    torchvision.io.decode_image gives them.
    """

    def __init__(
        self,
        weights_or_run: str | os.PathLike,
        device: str | torch.device = "auto",
        batch_size: int = 64,
        *,
        precision: str = "fp32",
        compile: bool | None = None,
        workers: int | None = None,
        model: str | None = None,
    ) -> None:
        """`model` names the network of a weights file that does not say (a torchvision, timm
        or CIFAR-reproduction `.pth`); ImageNet and CIFAR-10 class names are then filled in."""

        model, meta = load_model(weights_or_run, "cpu", model=model)
        self._setup(model, meta, device, batch_size, precision, compile, workers)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        meta: WeightsMeta,
        device: str | torch.device = "auto",
        batch_size: int = 64,
        *,
        precision: str = "fp32",
        compile: bool | None = None,
        workers: int | None = None,
    ) -> Classifier:
        """A Classifier for a model already in memory (the model itself is left untouched)."""
        self = cls.__new__(cls)
        self._setup(model, meta, device, batch_size, precision, compile, workers)
        return self

    def _setup(
        self,
        model: nn.Module,
        meta: WeightsMeta,
        device: str | torch.device,
        batch_size: int,
        precision: str,
        compile: bool | None,
        workers: int | None,
    ) -> None:

        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        spec = getattr(model, "spec", None)
        num_classes = spec.num_classes if spec is not None else None
        self.meta = meta
        self.classes = class_names(meta, num_classes)
        self.batch_size = batch_size
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.transform = preprocessing(meta, spec.in_channels if spec is not None else 3)
        self.model = optimize(model, mode="infer", device=device, precision=precision, compile=compile)
        self.device = self.model.device

    # --- the API --------------------------------------------------------------------------------

    def predict(self, images: ImageInput | Sequence[ImageInput], topk: int = 5) -> list[list[Prediction]]:
        """The `topk` most probable classes of each image, most probable first."""
        return [self.top(row, topk) for row in self.probabilities(images)]

    def probabilities(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor:
        """Softmax class probabilities, (number of images, classes), float32 on the CPU."""
        items = as_list(images)
        rows = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            with ThreadPoolExecutor(self.workers) as pool:
                batch = list(pool.map(self.preprocess, chunk))
            rows.append(self.forward(torch.stack(batch)))
        if not rows:
            return torch.empty(0, len(self.classes))
        return torch.cat(rows)

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """One image as the network's normalised (C, H, W) float input."""
        if isinstance(image, (str, os.PathLike)):
            image = open_rgb(image)
        elif isinstance(image, Image.Image):
            image = upright_rgb(image)
        elif isinstance(image, torch.Tensor):
            check_image_tensor(image)
        else:
            raise InputError(f"expected a path, a PIL image or an image tensor, got {type(image).__name__}")
        return self.transform(image)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities for a preprocessed batch. A compiled model (CUDA graphs) replays fixed
        shapes, so a short last batch is padded to `batch_size` rather than recompiled."""
        n = len(batch)
        if self.model.config.compile and n < self.batch_size:
            batch = torch.cat([batch, batch[-1:].expand(self.batch_size - n, *batch.shape[1:])])
        logits = self.model(batch)[:n]
        return torch.softmax(logits.float(), dim=1).cpu()

    def top(self, probabilities: torch.Tensor, k: int) -> list[Prediction]:
        """The `k` largest of one image's probabilities as (label, probability), largest first."""
        if k < 1:
            raise InputError(f"topk must be at least 1, got {k}")
        values, indices = probabilities.topk(min(k, len(self.classes)))
        return [Prediction(self.classes[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]

    def classify_files(self, paths: Iterable[str | os.PathLike], topk: int = 5) -> Iterator[FileResult]:
        """One FileResult per path, in order, batch by batch: files that cannot be read (not an
        image, truncated, over the pixel limit) come back with their error instead of stopping
        the rest."""
        paths = [str(p) for p in paths]
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(paths), self.batch_size):
                chunk = paths[start : start + self.batch_size]
                decoded = list(pool.map(self._try_preprocess, chunk))
                good = [x for x in decoded if isinstance(x, torch.Tensor)]
                probs = iter(self.forward(torch.stack(good)) if good else [])
                for path, x in zip(chunk, decoded):
                    if isinstance(x, torch.Tensor):
                        yield FileResult(path, predictions=self.top(next(probs), topk))
                    else:
                        yield FileResult(path, error=x)

    def _try_preprocess(self, path: str) -> torch.Tensor | str:

        try:
            return self.preprocess(path)
        except ResNetsError as exc:
            return str(exc)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"


# --- preprocessing ------------------------------------------------------------------------------


def preprocessing(meta: WeightsMeta, in_channels: int = 3) -> Callable[[Any], torch.Tensor]:
    """The torchvision v2 pipeline the weights' metadata describes (an upright RGB PIL image or
    an image tensor in, a normalised float tensor out).

    With `resize_size`, the shorter side goes to it and the centre `input_size` is cropped (the
    evaluation protocol of He et al. 2015, sec. 3.4: 256 then 224). Without, the shorter side
    goes to `input_size` and the centre is cropped, which for the square images of CIFAR and
    digits is the plain resize they were trained with, and never distorts other shapes.
    Networks trained on grayscale (one input channel, or metadata colour "L") see grayscale.
    Weights trained with per-pixel mean subtraction (a recorded `mean_image`) get it subtracted.
    """
    height, width = input_hw(meta)
    gray = in_channels == 1 or meta.extra.get("color") == "L"
    steps: list[Callable] = [Luma(in_channels) if gray else v2.RGB()]
    if meta.resize_size:
        steps += [
            CapAspect(MAX_ASPECT),
            v2.Resize(int(meta.resize_size), antialias=True),
            v2.CenterCrop([height, width]),
        ]
    elif height == width:
        steps += [CapAspect(MAX_ASPECT), v2.Resize(height, antialias=True), v2.CenterCrop(height)]
    else:
        steps.append(v2.Resize([height, width], antialias=True))
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if meta.extra.get("mean_image") is not None:  # per-pixel mean subtraction (sec. 4.2), as trained
        steps.append(SubtractMeanImage(torch.as_tensor(meta.extra["mean_image"], dtype=torch.float32)))
        return v2.Compose(steps)
    mean, std = meta.mean, meta.std
    if mean is None or std is None:
        mean, std = _zoo_stats(meta.model)
    if mean is not None and std is not None:
        if len(mean) != in_channels and len(mean) == 1:
            mean, std = list(mean) * in_channels, list(std) * in_channels
        steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


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


class CapAspect:
    """Cut the long side (around the centre) to `max_aspect` times the short side, so that
    resizing an extreme strip keeps memory bounded; images within the ratio pass untouched."""

    def __init__(self, max_aspect: float) -> None:
        self.max_aspect = max_aspect

    def __call__(self, image: Any) -> Any:
        height, width = TF.get_size(image)
        short = min(height, width)
        longest = int(short * self.max_aspect)
        if max(height, width) <= longest:
            return image
        return TF.center_crop(image, [min(height, longest), min(width, longest)])


def input_hw(meta: WeightsMeta) -> tuple[int, int]:
    """The network's input (H, W) in pixels: the metadata's, else its zoo model's own.

    Raises WeightsError when neither says, InputError for a malformed recorded size."""
    size = meta.input_size
    if size is None:
        info = ZOO.get(meta.model)
        if info is None:
            raise WeightsError(f"no input size in the metadata of this {meta.model!r} model")
        size = info.input_size
    return size_hw(size)


def _zoo_stats(model: str) -> tuple[Sequence[float] | None, Sequence[float] | None]:

    info = ZOO.get(model)
    return (info.mean, info.std) if info is not None else (None, None)


def class_names(meta: WeightsMeta, num_classes: int | None) -> list[str]:
    """The metadata's class names, or "0", "1", ... when it has none."""
    if meta.classes is None:
        if num_classes is None:
            raise WeightsError("the weights name no classes and the model has no spec")
        return [str(i) for i in range(num_classes)]
    if num_classes is not None and len(meta.classes) != num_classes:
        raise WeightsError(
            f"the metadata names {len(meta.classes)} classes but the network has {num_classes} outputs"
        )
    return list(meta.classes)


def check_image_tensor(x: torch.Tensor) -> None:
    """An image tensor as torchvision reads one: (C, H, W), 1 or 3 channels, uint8 or 0..1 float."""
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise InputError(
            f"expected an image tensor (C, H, W) with 1 or 3 channels, got shape {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return
    if not x.is_floating_point():
        raise InputError(f"expected a uint8 or float image tensor, got {x.dtype}")
    if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise InputError(
            "float image tensors must hold values in 0..1 (this one looks normalised already; "
            "call the model directly for preprocessed inputs)"
        )


def as_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """Single images and batches as a flat list of single images."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, torch.Tensor):
        if images.dim() == 4:
            return list(images.unbind(0))
        return [images]
    return [x for item in images for x in (as_list(item) if isinstance(item, torch.Tensor) else [item])]
