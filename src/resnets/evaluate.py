"""Evaluation: top-1, top-5, loss, per-class accuracy and a confusion matrix, for a model on a
loader; and `evaluate_run` for `resnets eval` on a run directory or a weights file.

The images are read through the evaluation pipeline recorded in the weights (preprocess.py's
`eval_transform`, the one `predict` and `Classifier` use), and their classes are matched to the
weights' class names by name, never by position.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.data import ImageData, load_eval_data, make_loader
from resnets.data.transforms import multiscale_sizes
from resnets.errors import DataError, WeightsError
from resnets.plots import plot_confusion
from resnets.preprocess import Preprocess
from resnets.runtime.device import resolve_device
from resnets.runtime.metrics import evaluate, evaluate_multiscale
from resnets.runtime.optimize import optimize
from resnets.text import shorten
from resnets.train.build import load_training_data
from resnets.train.config import TrainConfig
from resnets.train.run_dir import read_run_config
from resnets.weights.format import WeightsMeta, preprocess_of
from resnets.weights.load import checkpoint_note, find_weights, load_model
from resnets.weights.sources import is_assumed


def evaluate_run(
    path: str | Path,
    *,
    data: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    data_dir: str | None = None,
    out: str | Path | None = None,
    model: str | None = None,
    precision: str = "fp32",
    compile: bool | None = None,
    progress: bool = False,
    preprocess: dict[str, Any] | None = None,
    accept_changed_data: bool = False,
    multi_scale: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate a run's weights on `data` (default: the run's own validation split, as recorded
    in its split.json: data that changed since the run is refused, naming how many files were
    added and removed, unless `accept_changed_data`; then the recorded validation files that
    remain are evaluated).

    `path` is a run directory or a weights file. A weights file without our metadata (a
    torchvision/timm/CIFAR `.pth`) needs `model` to name its network (with model `overrides` such
    as in_channels). `data` is what `resnets train --data` takes; a folder of class folders
    (ROOT/<class>/...) is evaluated whole (its val/ part for a train/val layout), its classes
    matched to the weights' class names by name. Images are read through the weights' recorded
    pipeline, with `preprocess` settings (mean, std, crop_pct, interpolation, input_size,
    resize_size; see Preprocess.with_overrides) on top. The network runs through
    `resnets.optimize(mode="infer")` (BN folded, channels-last, autocast at `precision`; compiled
    if `compile`, which defaults to on for CUDA only). `progress` shows a bar over the batches on
    stderr when it is a terminal (the command line asks for it).

    Returns weights, data, top1, top5 (fractions of 1), loss (mean cross-entropy), count,
    per_class, confusion ({"classes", "counts"}: counts[true][predicted]), classes_matched_by,
    preprocess (the record used) and preprocess_assumed (True when the weights' origin was not
    known and the family's pipeline was assumed), weights_note (for an unfinished run's
    checkpoint: which weights these are), the unreadable files skipped, and, when the run was set
    for 10-crop testing (sec. 3.4) on image files, the 10-crop top-1/top-5/loss. With `out` (a
    folder, created if need be), also writes the confusion matrix there as confusion_matrix.png
    and adds its path as "confusion_matrix". `multi_scale` (image folders) adds the
    fully-convolutional multi-scale testing of sec. 3.4 (whole images, shorter side at each of
    data.transforms.multiscale_sizes, softmax scores averaged): top1_multiscale, top5_multiscale,
    loss_multiscale and the scales.

    Raises WeightsError for unreadable weights or weights without class names, DataError for
    data that does not fit the model (class names, channels) or a bare weights file without
    `data`, InputError for bad `preprocess` settings.
    """

    loaded = load_for_eval(
        path,
        data=data,
        data_dir=data_dir,
        model=model,
        preprocess=preprocess,
        accept_changed_data=accept_changed_data,
        **overrides,
    )
    net, dataset, config, name = loaded.net, loaded.data, loaded.config, loaded.name
    weights, meta, record = loaded.weights, loaded.meta, loaded.preprocess
    batch_size = batch_size or (config.batch_size if config is not None else 256)
    dev = resolve_device(device)
    fast = optimize(net, mode="infer", device=dev, precision=precision, compile=compile)
    crops = config.eval_crops if (config is not None and not dataset.val.in_memory) else 1
    common: dict[str, Any] = dict(device=dev, workers=workers, preprocess=record)
    loader = make_loader(dataset, "val", batch_size=batch_size, crops=1, **common)
    result = evaluate(fast, progress_bar(loader.epoch(0), len(loader), progress), dataset.num_classes)
    report = {
        "weights": str(weights),
        "data": name,
        **result.to_dict(dataset.classes),
        "confusion": {"classes": dataset.classes, "counts": result.confusion.tolist()},
        "classes_matched_by": loaded.matched_by,
        "preprocess": {k: v for k, v in record.to_dict().items() if k != "mean_image"},
        "preprocess_assumed": is_assumed(record),
    }
    if note := checkpoint_note(meta):  # an unfinished run: say which weights these are
        report["weights_note"] = note
    if dataset.messages:
        report["notes"] = dataset.messages
    if loader.skipped:
        report["skipped"] = loader.skipped
    if crops == 10:
        ten = make_loader(dataset, "val", batch_size=max(1, batch_size // 10), crops=10, **common)
        ten_result = evaluate(
            fast, progress_bar(ten.epoch(0), len(ten), progress, "10-crop"), dataset.num_classes
        )
        report.update(top1_10crop=ten_result.top1, top5_10crop=ten_result.top5, loss_10crop=ten_result.loss)
    if multi_scale:
        sizes = multiscale_sizes(record.input_size[0])
        eager = optimize(net, mode="infer", device=dev, precision=precision, compile=False)  # any size
        views = [make_loader(dataset, "val", batch_size=1, scale=s, **common) for s in sizes]
        scaled = evaluate_multiscale(
            eager,
            (progress_bar(v.epoch(0), len(v), progress, f"scale {s}") for v, s in zip(views, sizes)),
            dataset.num_classes,
        )
        report.update(
            top1_multiscale=scaled.top1,
            top5_multiscale=scaled.top5,
            loss_multiscale=scaled.loss,
            scales=sizes,
        )
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        png = Path(out) / "confusion_matrix.png"
        plot_confusion(png, result.confusion, dataset.classes, title=f"{meta.model} on {name}")
        report["confusion_matrix"] = str(png)
    return report


@dataclass
class EvalData:
    """A network and the data to evaluate it on, with the pipeline its weights record."""

    weights: Path  # the weights file
    net: nn.Module  # on the CPU, in eval mode
    meta: WeightsMeta
    data: ImageData  # its val split is what to evaluate on, its classes the weights'
    name: str  # what the data is called in reports
    config: TrainConfig | None  # the run's, when the weights are a run's
    preprocess: Preprocess  # the evaluation pipeline: make_loader(data, "val", preprocess=...)
    matched_by: str  # how the data's classes were matched to the weights' ("name" or "order")


def load_for_eval(
    path: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    model: str | None = None,
    preprocess: dict[str, Any] | None = None,
    accept_changed_data: bool = False,
    **overrides: Any,
) -> EvalData:
    """The network of a run directory or weights file (`model` names a foreign file's network,
    with model `overrides`), the pipeline its weights record (with `preprocess` settings on top)
    and `data` (default: the run's own validation split, as recorded in split.json) with its
    classes matched to the weights' by name: what `evaluate_run` and the tools that measure a
    network on its test data (reproduce's responses) start from.

    Raises WeightsError for unreadable weights or weights without class names, DataError for
    data that does not fit the model (class names, channels), a folder changed since the run
    (unless `accept_changed_data`) or a bare weights file without `data`, InputError for bad
    `preprocess` settings.
    """
    weights, run_dir = find_weights(Path(path))
    net, meta = load_model(weights, "cpu", model=model, **overrides)
    if meta.classes is None:
        raise WeightsError(
            f"{weights}: no class names in its metadata; convert it with 'resnets convert --classes'"
        )
    record = preprocess_of(meta, net.spec).with_overrides(**(preprocess or {}))
    config = read_run_config(run_dir) if run_dir is not None else None
    if data is None and config is None:
        raise DataError(f"{weights} is not inside a run directory; pass --data to say what to evaluate on")
    if data is None:
        assert config is not None
        here = config.replace(
            data_dir=data_dir or config.data_dir, download=False, accept_changed_data=accept_changed_data
        )
        dataset = load_training_data(here, run_dir)
        name = f"{dataset.name} (the run's validation split)"
    else:
        dataset = load_eval_data(
            data,
            record,
            data_dir=data_dir or (config.data_dir if config else "data"),
            synthetic_count=config.synthetic_count if config else 512,
            synthetic_classes=config.synthetic_classes if config else len(meta.classes),
        )
        name = dataset.name
    matched_by = match_classes(dataset, meta.classes, data or dataset.name, "classes_from" in meta.extra)
    if dataset.in_channels != net.spec.in_channels:
        raise DataError(
            f"{data}: {dataset.in_channels}-channel images, but the model takes {net.spec.in_channels}"
        )
    return EvalData(weights, net, meta, dataset, name, config, record, matched_by)


def progress_bar(batches: Iterable, total: int, show: bool, what: str = "eval") -> Iterable:
    """`batches`, counted by a tqdm bar on stderr when `show` and stderr is a terminal."""
    if not show:
        return batches
    from tqdm import tqdm

    return tqdm(batches, total=total, desc=what, unit="batch", file=sys.stderr, disable=None, leave=False)


def match_classes(dataset: ImageData, classes: list[str], what: str, named_by_us: bool) -> str:
    """Relabel `dataset` (its validation split) onto the weights' `classes`, matching names; the
    dataset's classes become the weights'. Returns how they were matched: "name", or "order" for
    names we filled in for a foreign file (ImageNet's, CIFAR-10's) when the data names its classes
    otherwise but has as many (an ImageNet folder names them by WordNet id, in label order).

    A dataset may lack some of the weights' classes (they score None per class); a class the
    weights do not know is a DataError listing both sides."""
    own = list(dataset.classes)
    unknown = [c for c in own if c not in classes]
    if not unknown:
        how = "name"
        remap = torch.as_tensor([classes.index(c) for c in own], dtype=torch.int64)
    elif named_by_us and len(own) == len(classes):
        how = "order"
        remap = torch.arange(len(classes))
    else:
        raise DataError(
            f"{what}: class(es) {shorten(unknown, 5)} are not among the model's {len(classes)} classes "
            f"({shorten(classes, 10)}); the data has {len(own)} ({shorten(own, 10)}); "
            "'resnets convert --classes FILE' records other names"
        )
    if len(dataset.val.labels):
        dataset.val.labels = remap[dataset.val.labels]
    dataset.classes = list(classes)
    return how
