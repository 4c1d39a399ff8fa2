"""Weights on disk: safetensors tensors plus JSON metadata, never pickle.

Our format is one `.safetensors` file whose header metadata says how to rebuild and use the
model: `resnets.model` (name), `resnets.spec` (the full ResNetSpec as JSON), and optional
`resnets.classes`, `resnets.mean`, `resnets.std`, `resnets.input_size`, `resnets.resize_size`
(all JSON). Anything that reads weights goes through `load_weights`.
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

from resnets.errors import WeightsError

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


def save_weights(model: nn.Module, path: str | os.PathLike, meta: WeightsMeta | None = None) -> Path:
    """Write the model's state_dict as safetensors with our metadata, atomically."""
    path = Path(path)
    if meta is None:
        spec = getattr(model, "spec", None)
        meta = WeightsMeta(
            model=getattr(model, "model_name", "custom"),
            spec=spec.to_dict() if spec is not None else None,
        )
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta.to_header())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
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
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    return tensors, WeightsMeta.from_header(header, path)


def load_weights(model: nn.Module, path: str | os.PathLike) -> WeightsMeta:
    """Load weights into `model` (strict: every key and shape must match) and return the metadata."""
    tensors, meta = read_safetensors(path)
    check_state_dict(model, tensors, path)
    model.load_state_dict(tensors, strict=True)
    return meta


def find_weights(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(weights file, run directory or None) for a run directory or a weights file path."""
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise WeightsError(f"{path}: no model.safetensors (is the run finished?)")
        return weights, path
    if not path.is_file():
        raise WeightsError(f"{path}: no such run directory or weights file")
    run_dir = path.parent if (path.parent / "config.json").is_file() else None
    return path, run_dir


def load_model(
    source: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, WeightsMeta]:
    """The model a run directory or one of our `.safetensors` files describes, weights loaded, in
    eval mode on `device`, with its metadata (classes, preprocessing)."""
    from resnets.models.create import create_model
    from resnets.models.spec import ResNetSpec

    weights, _ = find_weights(source)
    tensors, meta = read_safetensors(weights)
    if meta.spec is None:
        raise WeightsError(
            f"{weights}: no model spec in its metadata; convert it first with 'resnets convert'"
        )
    model = create_model(ResNetSpec.from_dict(meta.spec))
    check_state_dict(model, tensors, weights)
    model.load_state_dict(tensors, strict=True)
    model.model_name = meta.model
    return model.eval().to(device), meta


def check_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Raise one readable WeightsError listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = sorted(
        f"{k} (file {tuple(tensors[k].shape)}, model {tuple(own[k].shape)})"
        for k in set(own) & set(tensors)
        if tensors[k].shape != own[k].shape
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError(f"{path}: weights do not fit the model; " + "; ".join(problems))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
