"""Loading weights from any file we accept into a model, or building the model a file describes.

Files from elsewhere are welcome as well: safetensors without our metadata, and PyTorch
checkpoints (`.pth/.pt/.th/.tar/...`), read by `pytorch_files.read_checkpoint` with the
weights-only unpickler and mapped onto our names by `keymap` (torchvision, timm, the CIFAR
reproduction; wrapped and prefixed checkpoints). Every loaded tensor must be finite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from resnets.errors import WeightsError
from resnets.models.create import create_model
from resnets.models.spec import ResNetSpec
from resnets.text import first_line, shorten
from resnets.weights.adapt import adapt_stem
from resnets.weights.format import (
    WeightsMeta,
    check_finite,
    looks_like_safetensors,
    meta_for_model,
    read_safetensors,
)
from resnets.weights.keymap import extract_state_dict, map_to_model
from resnets.weights.pytorch_files import read_checkpoint
from resnets.weights.sources import Origin, recognise, split_tag, timm_name_of, timm_preprocess


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """Tensors and metadata of any weights file we accept: `.safetensors` (ours or anyone's) or a
    PyTorch checkpoint, unwrapped to its state dict (names as in the file; see `keymap`).

    A file without our metadata gets a WeightsMeta without a `spec`, holding what its origin
    (`sources.recognise`) tells: `extra["origin"]`, the evaluation pipeline (`preprocess`) and, in
    `extra["names_model"]`, the network a training checkpoint names. A training checkpoint's
    tensor file gives the run's weights only (its EMA weights when the run keeps them:
    `meta.extra["checkpoint_weights"]` names their prefix)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors" or looks_like_safetensors(path):
        tensors, meta = read_safetensors(path)
        prefix = meta.extra.get("checkpoint_weights")
        if isinstance(prefix, str) and prefix:
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            meta.extra["checkpoint_file"] = str(path)
        if meta.spec is not None:
            return tensors, meta
        return tensors, _foreign_meta(recognise(path, None, tensors), meta)
    checkpoint = read_checkpoint(path)
    tensors = extract_state_dict(checkpoint, path)
    return tensors, _foreign_meta(recognise(path, checkpoint, tensors), WeightsMeta())


def read_meta(path: str | os.PathLike) -> WeightsMeta:
    """The metadata of any weights file we accept, as `read_weights` gives it; a safetensors
    file's header alone is read, not its tensors."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors" or looks_like_safetensors(path):
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = WeightsMeta.from_header(f.metadata(), path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
        if meta.spec is not None:
            return meta
    return read_weights(path)[1]


def _foreign_meta(origin: Origin, meta: WeightsMeta) -> WeightsMeta:
    if origin.source:
        meta.extra["origin"] = origin.source
    if origin.preprocess is not None:
        meta.preprocess = origin.preprocess
    if origin.model is not None:
        meta.extra["names_model"] = origin.model
    if origin.timm_name is not None:
        meta.extra["timm_name"] = origin.timm_name
    return meta


def load_weights(model: nn.Module, path: str | os.PathLike, reset_head: bool = False) -> WeightsMeta:
    """Load any weights file we accept into `model` and return its metadata.

    Every key and shape must fit (after mapping peer layouts onto ours), else one WeightsError
    lists what does not. `reset_head=True` keeps the model's own freshly initialised classifier
    when the file's has another size (or none): for fine-tuning on other classes. RGB weights
    for a model with other input channels get their first convolution adapted (weights/adapt.py),
    said in `meta.extra["adapted"]`.
    """
    tensors, meta = read_weights(path)
    notes: list[str] = []
    model.load_state_dict(
        fit_state_dict(model, tensors, path, reset_head=reset_head, notes=notes), strict=True
    )
    if notes:
        meta.extra["adapted"] = "; ".join(notes)
    return meta


def fit_state_dict(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike,
    reset_head: bool = False,
    notes: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """`tensors` renamed onto `model`'s keys, checked to fit exactly and to be finite; a
    3-input-channel stem adapted to the model's input channels (a line about it added to `notes`)."""

    tensors, adapted = adapt_stem(model, map_to_model(tensors, model))
    if adapted and notes is not None:
        notes.append(adapted)
    if reset_head:
        own = model.state_dict()
        for key in ("fc.weight", "fc.bias"):
            if key in own and (key not in tensors or tensors[key].shape != own[key].shape):
                tensors[key] = own[key]
    try:
        check_state_dict(model, tensors, path)
    except WeightsError as error:
        own = model.state_dict()
        if not reset_head and any(
            key in own and key in tensors and tensors[key].shape != own[key].shape
            for key in ("fc.weight", "fc.bias")
        ):
            raise WeightsError(
                f"{error}; a classifier of another size: --reset-head (reset_head=True) starts a fresh one"
            ) from None
        raise
    check_finite(tensors, path)
    return tensors


def find_weights(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(weights file, run directory or None) for a run directory or a weights file path.

    A run directory gives its model.safetensors or, for a run that has not finished (stopped,
    interrupted, still training), the tensor file of its last checkpoint, which carries the same
    metadata (`checkpoint_note` says which weights those are)."""
    path = Path(path)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            weights = last_checkpoint_file(path / "checkpoint")
        if weights is None:
            raise WeightsError(f"{path}: no model.safetensors and no checkpoint yet")
        return weights, path
    if not path.is_file():
        raise WeightsError(f"{path}: no such run directory or weights file")
    run_dir = path.parent if (path.parent / "config.json").is_file() else None
    return path, run_dir


def last_checkpoint_file(folder: Path) -> Path | None:
    """The tensor file a run's checkpoint folder commits to in its latest.json (train/checkpoint.py
    writes it), or None when there is none."""
    try:
        name = json.loads((folder / "latest.json").read_text(encoding="utf-8"))["tensors"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or Path(name).name != name or not (folder / name).is_file():
        return None
    return folder / name


def checkpoint_note(meta: WeightsMeta) -> str | None:
    """'the run is not finished: using its last checkpoint, FILE (epoch 3 of 12, step 66; EMA
    weights)' when the weights came from a training checkpoint (read_weights), else None."""
    prefix = meta.extra.get("checkpoint_weights")
    if not prefix:
        return None
    path = meta.extra.get("checkpoint_file")
    progress = meta.extra.get("checkpoint") or {}
    where = f"epoch {progress.get('epoch')} of {progress.get('epochs')}, step {progress.get('step')}"
    kind = "EMA weights" if str(prefix).startswith("ema.") else "the raw weights"
    return f"the run is not finished: using its last checkpoint, {path} ({where}; {kind})"


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
    (ImageNet or CIFAR-10 classes), and its pipeline from its origin (`sources.recognise`; a timm
    name with a pretrained tag, "resnet50.a1_in1k", builds "resnet50" with timm's pipeline for
    that tag), else the family's, marked assumed in `preprocess_from`. A training checkpoint that
    names its network (torchvision's and timm's `args.model`) needs no `model`.
    """
    weights, _ = find_weights(source)
    tensors, meta = read_weights(weights)
    if meta.spec is not None:
        if model is not None and model != meta.model:
            raise WeightsError(f"{weights}: holds a {meta.model}, not a {model}; drop the model name")
        net = create_model(ResNetSpec.from_dict(meta.spec), name=meta.model, **overrides)
        if overrides:
            if meta.classes is not None and len(meta.classes) != net.spec.num_classes:
                meta.classes = None  # a new head: the recorded names no longer apply
            meta.spec = net.spec.to_dict()
    else:
        found, model = meta, model or meta.extra.get("names_model")
        if model is None:
            raise WeightsError(
                f"{weights}: does not say which network it holds; name it (e.g. --model resnet50), "
                "or convert it once with 'resnets convert'"
            )
        net = create_model(split_tag(model), **overrides)
        meta = meta_for_model(net, split_tag(model), dataset_classes=True)
        timm_name = found.extra.get("timm_name") or timm_name_of(model)
        recorded = found.preprocess or (timm_preprocess(timm_name) if timm_name else None)
        if recorded is not None:
            meta.preprocess = recorded
        if "origin" in found.extra or recorded is not None:
            meta.extra["origin"] = found.extra.get("origin") or recorded.source  # type: ignore[union-attr]
    notes: list[str] = []
    net.load_state_dict(
        fit_state_dict(net, tensors, weights, reset_head=reset_head, notes=notes), strict=True
    )
    if notes:
        meta.extra["adapted"] = "; ".join(notes)
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
            problems.append(f"{label}: {shorten(keys)}")
    if problems:
        raise WeightsError(f"{path}: weights do not fit the model; " + "; ".join(problems))
