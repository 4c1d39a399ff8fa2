"""Classifying images with a trained network: `Classifier` (the API) and what `resnets predict` runs.

A weights file carries its evaluation pipeline (a `Preprocess` record: input size, resize size or
crop fraction, interpolation, mean/std, colour), and images go through
`preprocess.eval_transform` of it, the one transform `resnets eval` uses too, so the same pixels
reach the network as in evaluation. The network itself runs through
`resnets.optimize(mode="infer")`, the fast path (BN folded into the convolutions, channels-last;
CUDA graphs on CUDA, a oneDNN Graph for fp32 on the CPU; `compile=False` runs it eagerly).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from PIL import Image
from torch import nn

from resnets.data.images import open_rgb, upright_rgb
from resnets.errors import InputError, ResNetsError, WeightsError
from resnets.gradcam import grad_cam
from resnets.preprocess import Normalize, Preprocess, eval_transform
from resnets.runtime.optimize import optimize
from resnets.text import shorten
from resnets.weights.format import WeightsMeta, preprocess_of
from resnets.weights.load import load_model

ImageInput = str | os.PathLike | Image.Image | torch.Tensor


class Prediction(NamedTuple):
    """One of an image's top-k classes."""

    label: str
    probability: float


class Explanation(NamedTuple):
    """A Grad-CAM heat-map of one image for one class: `heatmap` (H, W) in 0..1 at the network's
    input size, over `image` (C, H, W) in 0..1, the picture the network saw (resized, cropped,
    grayscale for one-channel networks)."""

    label: str
    probability: float
    heatmap: torch.Tensor
    image: torch.Tensor


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
        preprocess: Preprocess | dict[str, Any] | None = None,
    ) -> None:
        """`model` names the network of a weights file that does not say (a torchvision, timm
        or CIFAR-reproduction `.pth`); ImageNet and CIFAR-10 class names are then filled in.
        `preprocess` replaces the recorded pipeline (a Preprocess) or changes some of it (a dict
        for `Preprocess.with_overrides`: mean, std, crop_pct, interpolation, ...)."""

        model, meta = load_model(weights_or_run, "cpu", model=model)
        self._setup(model, meta, device, batch_size, precision, compile, workers, preprocess)

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
        preprocess: Preprocess | dict[str, Any] | None = None,
    ) -> Classifier:
        """A Classifier for a model already in memory (the model itself is left untouched)."""
        self = cls.__new__(cls)
        self._setup(model, meta, device, batch_size, precision, compile, workers, preprocess)
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
        preprocess: Preprocess | dict[str, Any] | None = None,
    ) -> None:

        if batch_size < 1:
            raise InputError(f"batch size must be at least 1, got {batch_size}")
        spec = getattr(model, "spec", None)
        num_classes = spec.num_classes if spec is not None else None
        self.meta = meta
        self.classes = class_names(meta, num_classes)
        self.batch_size = batch_size
        self.workers = workers or min(4, os.cpu_count() or 1)
        if isinstance(preprocess, Preprocess):
            self.preprocess_record = preprocess
        else:
            self.preprocess_record = preprocess_of(meta, spec).with_overrides(**(preprocess or {}))
        self.transform = eval_transform(self.preprocess_record, spec.in_channels if spec is not None else 3)
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
        """Probabilities for a preprocessed batch. CUDA graphs replay fixed shapes, so there a
        short last batch is padded to `batch_size` rather than captured again; the CPU's oneDNN
        Graph and eager runs take it as it is."""
        n = len(batch)
        if self.model.fixed_shapes and n < self.batch_size:
            batch = torch.cat([batch, batch[-1:].expand(self.batch_size - n, *batch.shape[1:])])
        logits = self.model(batch)[:n]
        return torch.softmax(logits.float(), dim=1).cpu()

    def explain(
        self,
        images: ImageInput | Sequence[ImageInput],
        target: str | int | None = None,
        layer: str | None = None,
    ) -> list[Explanation]:
        """Grad-CAM heat-maps (resnets.gradcam; Selvaraju et al. 2017) of each image for `target`
        (a class name or index; default: each image's top-1 class) at `layer` (default: the last
        stage, layer4, or layer3 for CIFAR nets), computed on the eager network in fp32.

        Raises InputError for an unknown class or layer, ResNetsError without the grad-cam package."""
        index = None if target is None else self.class_index(target)
        items = as_list(images)
        found = []
        for start in range(0, len(items), self.batch_size):
            with ThreadPoolExecutor(self.workers) as pool:
                batch = torch.stack(list(pool.map(self.preprocess, items[start : start + self.batch_size])))
            cams = grad_cam(self.model.model, batch, layer=layer, classes=index)
            for x, heat, c, p in zip(batch, cams.maps, cams.classes, cams.probabilities):
                found.append(Explanation(self.classes[c], float(p[c]), heat, self.unnormalize(x)))
        return found

    def class_index(self, target: str | int) -> int:
        """The index of a class given by name, or by index (as a number or its digits).

        Raises InputError naming the classes there are."""
        if isinstance(target, str) and target in self.classes:
            return self.classes.index(target)
        if isinstance(target, int) or str(target).isdigit():
            if int(target) < len(self.classes):
                return int(target)
        raise InputError(f"no class {target!r}; the classes are {shorten(self.classes, 10)}")

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """A preprocessed (C, H, W) input back in 0..1: the picture the network saw."""
        return Normalize(self.preprocess_record, x.shape[-3]).inverse(x).clamp(0, 1)

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
