"""`resnets convert`: any weights file we can read -> our safetensors format with full metadata.

Converting once turns a torchvision/timm/CIFAR-reproduction checkpoint into a file that says
everything needed to use it (architecture spec, class names, and the evaluation pipeline of the
source it comes from: sources.py), so `predict`, `eval` and `export` need no `--model` for it and
never touch a pickle again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from resnets.errors import WeightsError
from resnets.weights.format import WeightsMeta, save_weights
from resnets.weights.load import load_model
from resnets.weights.sources import family_preprocess


def convert_weights(
    source: str | os.PathLike,
    out: str | os.PathLike,
    model: str | None = None,
    *,
    classes: list[str] | None = None,
    input_size: int | None = None,
    resize_size: int | None = None,
    reset_head: bool = False,
    preprocess: dict[str, Any] | None = None,
    **overrides: Any,
) -> tuple[Path, WeightsMeta]:
    """Read `source` (as `model`, with `overrides`, when it does not say), check it fits and is
    finite, and write `out` atomically with our metadata. Returns (out, metadata).

    The recorded pipeline is the source's (`sources.recognise`), else the family's (marked
    assumed), with `input_size`, `resize_size` and `preprocess` (mean, std, crop_pct,
    interpolation: Preprocess.with_overrides) on top."""
    out = Path(out)
    if out.suffix.lower() != ".safetensors":
        raise WeightsError(f"{out}: the output must be a .safetensors file")
    if out.exists() and out.resolve() == Path(source).resolve():
        raise WeightsError(f"{out}: the output would overwrite the source")
    net, meta = load_model(source, "cpu", model=model, reset_head=reset_head, **overrides)
    num_classes = net.spec.num_classes
    if classes is not None:
        if len(classes) != num_classes:
            raise WeightsError(f"{len(classes)} class names given, but the model has {num_classes} outputs")
        meta.classes = list(classes)
        meta.extra.pop("classes_from", None)
    record = meta.preprocess or family_preprocess(net.spec)
    meta.preprocess = record.with_overrides(
        input_size=input_size, resize_size=resize_size, **(preprocess or {})
    )
    meta.extra = {**meta.extra, "converted_from": Path(source).name}
    if overrides:
        meta.extra["overrides"] = overrides
    if not out.parent.is_dir():
        raise WeightsError(f"{out.parent}: no such directory for the output")
    return save_weights(net, out, meta), meta
