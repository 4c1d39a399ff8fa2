"""Evaluation: top-1, top-5, loss, per-class accuracy and a confusion matrix, for a model on a
loader; and `evaluate_run` for `resnets eval` on a run directory or a weights file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.data import ImageData, load_data, make_loader
from resnets.data.transforms import multiscale_sizes
from resnets.errors import DataError, WeightsError
from resnets.plots import plot_confusion
from resnets.runtime.device import resolve_device
from resnets.runtime.metrics import evaluate, evaluate_multiscale
from resnets.runtime.optimize import optimize
from resnets.text import shorten, size_hw
from resnets.train.build import load_training_data
from resnets.train.config import TrainConfig
from resnets.train.run_dir import read_run_config
from resnets.weights.format import WeightsMeta
from resnets.weights.load import find_weights, load_model


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
    multi_scale: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate a run's weights on `data` (default: the run's own validation split).

    `path` is a run directory or a weights file. A weights file without our metadata (a
    torchvision/timm/CIFAR `.pth`) needs `model` to name its network (with model `overrides` such
    as in_channels). The network runs through `resnets.optimize(mode="infer")` (BN folded,
    channels-last, autocast at `precision`; compiled if `compile`, which defaults to on for CUDA
    only). Returns weights, data, top1, top5 (fractions of 1), loss (mean cross-entropy), count,
    per_class, the unreadable files skipped, and, when the run was set for 10-crop testing
    (sec. 3.4) on image files, the 10-crop top-1/top-5/loss. With `out` (a folder, created if
    need be), also writes the confusion matrix (rows true class, columns predicted) there as
    confusion_matrix.png and adds its path as "confusion_matrix". `multi_scale` (image folders)
    adds the fully-convolutional multi-scale testing of sec. 3.4 (whole images, shorter side at
    each of data.transforms.multiscale_sizes, softmax scores averaged): top1_multiscale,
    top5_multiscale, loss_multiscale and the scales.

    Raises WeightsError for unreadable weights or weights without class names, DataError for
    data that does not fit the model (classes, channels) or a bare weights file without `data`.
    """

    loaded = load_for_eval(path, data=data, data_dir=data_dir, model=model, **overrides)
    net, dataset, config, name = loaded.net, loaded.data, loaded.config, loaded.name
    weights, meta = loaded.weights, loaded.meta
    batch_size = batch_size or (config.batch_size if config is not None else 256)
    dev = resolve_device(device)
    fast = optimize(net, mode="infer", device=dev, precision=precision, compile=compile)
    crops = config.eval_crops if (config is not None and not dataset.val.in_memory) else 1
    loader = make_loader(dataset, "val", batch_size=batch_size, device=dev, workers=workers, crops=1)
    result = evaluate(fast, loader.epoch(0), dataset.num_classes)
    report = {"weights": str(weights), "data": name, **result.to_dict(dataset.classes)}
    if loader.skipped:
        report["skipped"] = loader.skipped
    if crops == 10:
        ten = make_loader(
            dataset, "val", batch_size=max(1, batch_size // 10), device=dev, workers=workers, crops=10
        )
        ten_result = evaluate(fast, ten.epoch(0), dataset.num_classes)
        report.update(top1_10crop=ten_result.top1, top5_10crop=ten_result.top5, loss_10crop=ten_result.loss)
    if multi_scale:
        sizes = multiscale_sizes(_single_size(meta.input_size) or dataset.input_size)
        eager = optimize(net, mode="infer", device=dev, precision=precision, compile=False)  # any size
        views = [
            make_loader(dataset, "val", batch_size=1, device=dev, workers=workers, scale=s) for s in sizes
        ]
        scaled = evaluate_multiscale(eager, (v.epoch(0) for v in views), dataset.num_classes)
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
    """A network and the data to evaluate it on, preprocessed as its weights record."""

    weights: Path  # the weights file
    net: nn.Module  # on the CPU, in eval mode
    meta: WeightsMeta
    data: ImageData  # its val split is what to evaluate on
    name: str  # what the data is called in reports
    config: TrainConfig | None  # the run's, when the weights are a run's


def load_for_eval(
    path: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    model: str | None = None,
    **overrides: Any,
) -> EvalData:
    """The network of a run directory or weights file (`model` names a foreign file's network,
    with model `overrides`), and `data` (default: the run's own validation split) preprocessed
    as the weights record: mean/std or the per-pixel mean image, input and resize size.

    Raises WeightsError for unreadable weights or weights without class names, DataError for
    data that does not fit the model (classes, channels) or a bare weights file without `data`.
    """
    weights, run_dir = find_weights(Path(path))
    net, meta = load_model(weights, "cpu", model=model, **overrides)
    if meta.classes is None:
        raise WeightsError(
            f"{weights}: no class names in its metadata; convert it with 'resnets convert --classes'"
        )
    config = None
    if run_dir is not None:
        config = read_run_config(run_dir)
    if data is None and config is None:
        raise DataError(f"{weights} is not inside a run directory; pass --data to say what to evaluate on")
    if data is None:
        assert config is not None
        dataset = load_training_data(config.replace(data_dir=data_dir or config.data_dir, download=False))
        name = f"{dataset.name} (the run's validation split)"
    else:
        dataset = load_data(
            data,
            input_size=_single_size(meta.input_size),
            data_dir=data_dir or (config.data_dir if config else "data"),
            default_size=_single_size(meta.input_size) or 224,
            synthetic_count=config.synthetic_count if config else 512,
            synthetic_classes=config.synthetic_classes if config else len(meta.classes),
        )
        name = dataset.name
        # Names we filled in for a foreign file (ImageNet's, CIFAR-10's) need only agree in number:
        # an ImageNet folder names its classes by WordNet id, in the same label order.
        named_by_us = "classes_from" in meta.extra and len(dataset.classes) == len(meta.classes)
        if dataset.classes != meta.classes and not named_by_us:
            raise DataError(
                f"{data}: its classes ({shorten(dataset.classes, 5)}) are not the {len(meta.classes)} "
                f"classes the model was trained on ({shorten(meta.classes, 5)}); "
                "'resnets convert --classes FILE' records other names"
            )
    # Preprocess exactly as in training: the run's own statistics and input size.
    dataset.mean, dataset.std = tuple(meta.mean or dataset.mean), tuple(meta.std or dataset.std)
    if meta.extra.get("mean_image") is not None:  # per-pixel mean subtraction, as trained
        dataset.mean_image = torch.as_tensor(meta.extra["mean_image"], dtype=torch.float32)
    if meta.input_size is not None:  # the recorded protocol, as predict applies it: no resize
        dataset.resize_size = meta.resize_size  # recorded means the whole image, not a 0.875 zoom
    if dataset.in_channels != net.spec.in_channels:
        raise DataError(
            f"{data}: {dataset.in_channels}-channel images, but the model takes {net.spec.in_channels}"
        )
    return EvalData(weights=weights, net=net, meta=meta, data=dataset, name=name, config=config)


def _single_size(size) -> int | None:
    """The height of a recorded input size (N or [H, W]), or None."""
    return None if size is None else size_hw(size)[0]
