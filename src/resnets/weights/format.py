"""Our weights file: safetensors tensors plus JSON metadata (`resnets.*` header keys), never pickle.

The header says how to rebuild and use the model: `resnets.model` (name), `resnets.spec` (the full
ResNetSpec as JSON), and optional `resnets.classes` and `resnets.preprocess` (the evaluation
pipeline, a `Preprocess` record: input size, resize size or crop_pct, interpolation, mean/std or a
mean image, colour, and where it comes from), all JSON. The record's mean/std/input_size/
resize_size/color are also written under their own keys, as files had them before the record; such
older files read as the record they stand for. `meta_for_model` fills the metadata in for a model
that comes without a file: from its spec and what we know of its family (sources.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from resnets.atomic import atomic_write
from resnets.errors import InputError, WeightsError
from resnets.preprocess import Preprocess
from resnets.text import first_line, shorten, size_hw
from resnets.weights.sources import CIFAR10_CLASSES, family_preprocess, imagenet_classes

FORMAT_VERSION = "1"
_PREFIX = "resnets."


@dataclass
class WeightsMeta:
    """What a weights file says about its model: enough to rebuild it and preprocess inputs.

    The preprocessing fields (mean .. mean_image) are one `Preprocess` record, read and set whole
    through `preprocess`; the file keeps it as `resnets.preprocess` and, for readers of earlier
    versions, its mean/std/input_size/resize_size/color also under their own keys. A file with
    only those keys (written before the record existed) reads as the record they stand for
    (`legacy_preprocess`). `preprocess_from` says where the record comes from.
    """

    model: str = "custom"
    spec: dict[str, Any] | None = None
    classes: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    input_size: int | list[int] | None = None
    resize_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    normalize: str | None = None
    color: str | None = None
    preprocess_from: str | None = None
    mean_image: torch.Tensor | None = field(default=None, compare=False, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess(self) -> Preprocess | None:
        """The evaluation pipeline these fields record, or None without an input size.

        Raises WeightsError for fields that make no valid record."""
        if self.input_size is None:
            return None
        try:
            return Preprocess(
                input_size=size_hw(self.input_size),
                resize_size=self.resize_size,
                crop_pct=self.crop_pct,
                interpolation=self.interpolation or "bilinear",
                mean=tuple(self.mean) if self.mean is not None else None,
                std=tuple(self.std) if self.std is not None else None,
                normalize=self.normalize or "per-channel",
                color=self.color or "RGB",
                source=self.preprocess_from or "",
                mean_image=self.mean_image,
            )
        except (InputError, ValueError) as exc:
            raise WeightsError(f"the recorded preprocessing is not valid: {first_line(exc)}") from None

    @preprocess.setter
    def preprocess(self, record: Preprocess) -> None:
        height, width = record.input_size
        self.input_size = height if height == width else [height, width]
        self.resize_size, self.crop_pct = record.resize_size, record.crop_pct
        self.interpolation, self.normalize, self.color = record.interpolation, record.normalize, record.color
        self.mean = list(record.mean) if record.mean is not None else None
        self.std = list(record.std) if record.std is not None else None
        self.preprocess_from = record.source or None
        self.mean_image = record.mean_image

    def to_header(self) -> dict[str, str]:
        header = {f"{_PREFIX}format": FORMAT_VERSION}
        for key in _HEADER_KEYS:
            value = getattr(self, key)
            if value is not None:
                header[_PREFIX + key] = value if key == "model" else json.dumps(value)
        record = self.preprocess
        if record is not None:
            header[f"{_PREFIX}preprocess"] = json.dumps(record.to_dict())
        for key, value in self.extra.items():
            header[_PREFIX + key] = json.dumps(value)
        return header

    @classmethod
    def from_header(cls, header: dict[str, str] | None, path: str | os.PathLike) -> WeightsMeta:
        meta = cls()
        record = None
        for key, raw in (header or {}).items():
            if not key.startswith(_PREFIX) or key == f"{_PREFIX}format":
                continue
            name = key[len(_PREFIX) :]
            try:
                value = raw if name == "model" else json.loads(raw)
            except json.JSONDecodeError:
                raise WeightsError(f"{path}: metadata {key!r} is not valid JSON") from None
            if name == "preprocess":
                # Earlier runs wrote a sentence here ("resize to input_size"); the fields say it all.
                record = value if not isinstance(value, str) else None
            elif name in _HEADER_KEYS:
                setattr(meta, name, value)
            else:
                meta.extra[name] = value
        if record is not None:
            try:
                meta.preprocess = Preprocess.from_dict(record)
            except InputError as exc:
                raise WeightsError(f"{path}: metadata 'resnets.preprocess': {exc}") from None
        elif meta.input_size is not None:  # written before the record: what its fields stood for
            meta.preprocess_from = "recorded (mean, std, input and resize size)"
        return meta


_HEADER_KEYS = ("model", "spec", "classes", "mean", "std", "input_size", "resize_size", "color")


def meta_for_model(
    model: nn.Module, name: str | None = None, *, dataset_classes: bool = False
) -> WeightsMeta:
    """Metadata for a model that comes without a weights file's: its name (`name`, else the
    model's `name`, else "custom") and spec, and the pipeline assumed for its family
    (`sources.family_preprocess`: CIFAR-10's statistics at 32 px for a CIFAR stem, sec. 4.2;
    torchvision's ImageNet evaluation otherwise, sec. 3.4), marked "assumed" in `preprocess_from`.

    `dataset_classes=True` (for weights trained elsewhere, e.g. a torchvision `.pth`) also names
    the classes of the family's dataset when the head has as many outputs: the 1000 ImageNet-1k
    or the 10 CIFAR-10 names, with `extra["classes_from"]` saying so. A module without a spec
    (not a ResNet) gets its name only.
    """
    spec = getattr(model, "spec", None)
    meta = WeightsMeta(model=name or getattr(model, "name", "custom"))
    if spec is None:
        return meta
    meta.spec = spec.to_dict()
    meta.preprocess = family_preprocess(spec)
    classes, source = (
        (CIFAR10_CLASSES, "cifar-10") if spec.stem == "cifar" else (imagenet_classes(), "imagenet-1k")
    )
    if dataset_classes and spec.num_classes == len(classes):
        meta.classes, meta.extra["classes_from"] = list(classes), source
    return meta


def preprocess_of(meta: WeightsMeta, spec: Any | None) -> Preprocess:
    """The evaluation pipeline recorded in `meta`, else the one assumed for the network's family
    (`spec`: a ResNetSpec; a model handed over without metadata): what eval, predict and export's
    checks build their pixels from with `resnets.preprocess.eval_transform(record, in_channels)`.

    Raises WeightsError when neither can be had, or for a recorded pipeline that is not valid."""
    recorded = meta.preprocess
    if recorded is not None:
        return recorded
    if spec is None:
        raise WeightsError(f"no input size in the metadata of this {meta.model!r} model")
    return family_preprocess(spec)


def save_weights(model: nn.Module, path: str | os.PathLike, meta: WeightsMeta | None = None) -> Path:
    """Write the model's state_dict as safetensors with our metadata (default: `meta_for_model`),
    atomically (atomic.py: temp file, fsync, rename, fsync of the folder). Returns `path`.

    Raises OSError when the folder cannot be written; nothing is left behind then.
    """
    path = Path(path)
    if meta is None:
        meta = meta_for_model(model)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta.to_header()))
    return path


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Tensors and metadata of a safetensors file; a one-line WeightsError if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
    return tensors, WeightsMeta.from_header(header, path)


def looks_like_safetensors(path: Path) -> bool:
    """True when the file starts as safetensors does (an 8-byte header length, then a JSON
    object), whatever its name: a temp file being verified, or a `.bin` from elsewhere."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def check_finite(tensors: dict[str, torch.Tensor], path: str | os.PathLike | None = None) -> list[str]:
    """The sorted names of the floating-point tensors holding NaN or inf: such a weight would
    silently poison every output.

    With `path` (the file the tensors come from or go to), raises a WeightsError naming that file
    and the tensors (the first 8, "and N more") instead of returning a non-empty list; without,
    returns the list (empty when every tensor is finite) for the caller to word its own error.
    """
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad and path is not None:
        raise WeightsError(f"{path}: non-finite values (NaN or inf) in {shorten(bad)}")
    return bad
