"""Our weights file: safetensors tensors plus JSON metadata (`resnets.*` header keys), never pickle.

The header says how to rebuild and use the model: `resnets.model` (name), `resnets.spec` (the full
ResNetSpec as JSON), and optional `resnets.classes`, `resnets.mean`, `resnets.std`,
`resnets.input_size`, `resnets.resize_size` (all JSON). `meta_for_model` fills them in for a model
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
from resnets.errors import WeightsError
from resnets.models.zoo import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from resnets.text import first_line, shorten
from resnets.weights.sources import CIFAR10_CLASSES, IMAGENET_INPUT, IMAGENET_RESIZE, imagenet_classes

FORMAT_VERSION = "1"
_PREFIX = "resnets."


@dataclass
class WeightsMeta:
    """What a weights file says about its model: enough to rebuild it and preprocess inputs."""

    model: str = "custom"
    spec: dict[str, Any] | None = None
    classes: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    input_size: int | list[int] | None = None
    resize_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_header(self) -> dict[str, str]:
        header = {f"{_PREFIX}format": FORMAT_VERSION}
        for key in ("model", "spec", "classes", "mean", "std", "input_size", "resize_size"):
            value = getattr(self, key)
            if value is not None:
                header[_PREFIX + key] = value if key == "model" else json.dumps(value)
        for key, value in self.extra.items():
            header[_PREFIX + key] = json.dumps(value)
        return header

    @classmethod
    def from_header(cls, header: dict[str, str] | None, path: str | os.PathLike) -> WeightsMeta:
        meta = cls()
        for key, raw in (header or {}).items():
            if not key.startswith(_PREFIX) or key == f"{_PREFIX}format":
                continue
            name = key[len(_PREFIX) :]
            try:
                value = raw if name == "model" else json.loads(raw)
            except json.JSONDecodeError:
                raise WeightsError(f"{path}: metadata {key!r} is not valid JSON") from None
            if name in cls.__dataclass_fields__ and name != "extra":
                setattr(meta, name, value)
            else:
                meta.extra[name] = value
        return meta


def meta_for_model(
    model: nn.Module, name: str | None = None, *, dataset_classes: bool = False
) -> WeightsMeta:
    """Metadata for a model that comes without a weights file's: its name (`name`, else the
    model's `name`, else "custom") and spec, and the preprocessing of its family: a CIFAR
    stem (sec. 4.2) gets CIFAR-10's mean/std and 32 px; any other ResNet ImageNet's mean/std and
    torchvision's eval transform (resize the shorter side to 256, centre-crop 224; sec. 3.4).
    RGB statistics are left out for inputs with another number of channels.

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
    if spec.stem == "cifar":
        meta.mean, meta.std, meta.input_size = list(CIFAR10_MEAN), list(CIFAR10_STD), 32
        classes, source = CIFAR10_CLASSES, "cifar-10"
    else:
        meta.mean, meta.std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        meta.input_size, meta.resize_size = IMAGENET_INPUT, IMAGENET_RESIZE
        classes, source = imagenet_classes(), "imagenet-1k"
    if dataset_classes and spec.num_classes == len(classes):
        meta.classes, meta.extra["classes_from"] = list(classes), source
    if spec.in_channels != len(meta.mean):  # RGB statistics do not describe other inputs
        meta.mean = meta.std = None
    return meta


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
