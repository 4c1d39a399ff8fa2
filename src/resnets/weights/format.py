"""Our weights file: safetensors tensors plus JSON metadata (`resnets.*` header keys), never pickle.

The header says how to rebuild and use the model: `resnets.model` (name), `resnets.spec` (the full
ResNetSpec as JSON), and optional `resnets.classes`, `resnets.mean`, `resnets.std`,
`resnets.input_size`, `resnets.resize_size` (all JSON).
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
    """Write the model's state_dict as safetensors with our metadata, atomically (atomic.py)."""
    path = Path(path)
    if meta is None:
        spec = getattr(model, "spec", None)
        meta = WeightsMeta(
            model=getattr(model, "name", "custom"),
            spec=spec.to_dict() if spec is not None else None,
        )
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
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
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


def check_finite(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """NaN or inf in a weight would silently poison every output; name the tensors that have them."""
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise WeightsError(f"{path}: non-finite values (NaN or inf) in {shown}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
