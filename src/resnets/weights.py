"""Weights on disk: safetensors tensors plus JSON metadata, never pickle.

Our format is one `.safetensors` file whose header metadata says how to rebuild and use the
model: `resnets.model` (name), `resnets.spec` (the full ResNetSpec as JSON), and optional
`resnets.classes`, `resnets.mean`, `resnets.std`, `resnets.input_size`, `resnets.resize_size`
(all JSON). Anything that reads weights goes through `load_weights` (into a model you built) or
`load_model` (builds it too).

Files from elsewhere are welcome as well: safetensors without our metadata, and PyTorch
checkpoints (`.pth/.pt/.th/.tar/...`), read by `checkpoints_in.read_checkpoint` with the
weights-only unpickler and mapped onto our names by `keymap` (torchvision, timm, the CIFAR
reproduction; wrapped and prefixed checkpoints). Every loaded tensor must be finite.
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


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Tensors and metadata of any weights file we accept: `.safetensors` (ours or anyone's) or a
    PyTorch checkpoint, unwrapped to its state dict (names as in the file; see `keymap`).

    A file without our metadata gets an empty WeightsMeta (its `spec` is None)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors" or looks_like_safetensors(path):
        return read_safetensors(path)
    from resnets.checkpoints_in import read_checkpoint
    from resnets.keymap import extract_state_dict

    return extract_state_dict(read_checkpoint(path), path), WeightsMeta()


def load_weights(model: nn.Module, path: str | os.PathLike, reset_head: bool = False) -> WeightsMeta:
    """Load any weights file we accept into `model` and return its metadata.

    Every key and shape must fit (after mapping peer layouts onto ours), else one WeightsError
    lists what does not. `reset_head=True` keeps the model's own freshly initialised classifier
    when the file's has another size (or none): for fine-tuning on other classes.
    """
    tensors, meta = read_weights(path)
    model.load_state_dict(fit_state_dict(model, tensors, path, reset_head=reset_head), strict=True)
    return meta


def fit_state_dict(
    model: nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike, reset_head: bool = False
) -> dict[str, torch.Tensor]:
    """`tensors` renamed onto `model`'s keys, checked to fit exactly and to be finite."""
    from resnets.keymap import map_to_model

    tensors = map_to_model(tensors, model)
    if reset_head:
        own = model.state_dict()
        for key in ("fc.weight", "fc.bias"):
            if key in own and (key not in tensors or tensors[key].shape != own[key].shape):
                tensors[key] = own[key]
    check_state_dict(model, tensors, path)
    check_finite(tensors, path)
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """NaN or inf in a weight would silently poison every output; name the tensors that have them."""
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise WeightsError(f"{path}: non-finite values (NaN or inf) in {shown}")


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
    source: str | os.PathLike,
    device: str | torch.device = "cpu",
    model: str | None = None,
    reset_head: bool = False,
    **overrides: Any,
) -> tuple[nn.Module, WeightsMeta]:
    """The model a run directory or weights file describes, weights loaded, in eval mode on
    `device`, with its metadata (classes, preprocessing).

    Our files record their architecture, and `overrides` (e.g. num_classes with `reset_head`)
    apply on top. A file from elsewhere (a torchvision/timm/CIFAR `.pth`, a bare safetensors)
    records none: `model` names it then, and its metadata comes from what we know of that model
    (ImageNet or CIFAR-10 classes and preprocessing, see `known_meta`).
    """
    from resnets.models.create import create_model
    from resnets.models.spec import ResNetSpec

    weights, _ = find_weights(source)
    tensors, meta = read_weights(weights)
    if meta.spec is not None:
        if model is not None and model != meta.model:
            raise WeightsError(f"{weights}: holds a {meta.model}, not a {model}; drop the model name")
        net = create_model(ResNetSpec.from_dict(meta.spec), **overrides)
        if overrides:
            if meta.classes is not None and len(meta.classes) != net.spec.num_classes:
                meta.classes = None  # a new head: the recorded names no longer apply
            meta.spec = net.spec.to_dict()
    elif model is None:
        raise WeightsError(
            f"{weights}: does not say which network it holds; name it (e.g. --model resnet50), "
            "or convert it once with 'resnets convert'"
        )
    else:
        from resnets.known_meta import default_meta

        net = create_model(model, **overrides)
        meta = default_meta(model, net)
    net.load_state_dict(fit_state_dict(net, tensors, weights, reset_head=reset_head), strict=True)
    net.model_name = meta.model
    return net.eval().to(device), meta


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
