"""Evaluation: top-1, top-5, loss, per-class accuracy and a confusion matrix, for a model on a
loader; and `evaluate_run` for `resnets eval` on a run directory or a weights file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnets.errors import DataError, WeightsError


@dataclass
class Evaluation:
    loss: float
    top1: float
    top5: float
    count: int
    confusion: torch.Tensor  # [true class, predicted class] counts

    def per_class(self, classes: list[str]) -> dict[str, float | None]:
        totals = self.confusion.sum(1)
        hits = self.confusion.diagonal()
        return {c: (hits[i] / totals[i]).item() if totals[i] > 0 else None for i, c in enumerate(classes)}

    def to_dict(self, classes: list[str]) -> dict[str, Any]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "count": self.count,
            "per_class": self.per_class(classes),
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches,
    num_classes: int,
    *,
    autocast=None,
    channels_last: bool = False,
    reduce=None,
) -> Evaluation:
    """Mean cross-entropy, top-1/top-5 accuracy and confusion counts over `batches`.

    A batch of shape (N, K, C, H, W) holds K crops per image (10-crop testing, sec. 3.4): their
    softmax scores are averaged. `reduce` sums the per-process totals (see train/ranks.py).
    """
    from contextlib import nullcontext

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss total, top-5 hits, count
    for x, y in batches:
        crops = x.shape[1] if x.dim() == 5 else 1
        x = x.flatten(0, 1) if crops > 1 else x
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast or nullcontext():
            logits = model(x)
        logits = logits.float()
        if crops > 1:
            log_probs = F.softmax(logits, 1).view(-1, crops, num_classes).mean(1).clamp_min(1e-12).log()
        else:
            log_probs = F.log_softmax(logits, 1)
        k = min(5, num_classes)
        top = log_probs.topk(k, 1).indices
        sums[0] += F.nll_loss(log_probs, y, reduction="sum")
        sums[1] += (top == y[:, None]).any(1).sum()
        sums[2] += len(y)
        confusion.view(-1).index_add_(0, y * num_classes + top[:, 0], torch.ones_like(y))
    if reduce is not None:
        sums, confusion = reduce(sums), reduce(confusion)
    model.train(was_training)
    count = int(sums[2].item())
    if count == 0:
        raise DataError("no images to evaluate (all unreadable or an empty split)")
    return Evaluation(
        loss=(sums[0] / count).item(),
        top1=int(confusion.diagonal().sum().item()) / count,
        top5=int(sums[1].item()) / count,
        count=count,
        confusion=confusion.cpu(),
    )


def plot_confusion(path: Path, confusion: torch.Tensor, classes: list[str], title: str = "") -> None:
    """The confusion matrix as a PNG: rows true class, columns predicted, shaded by row share."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from resnets.atomic import atomic_write

    n = len(classes)
    share = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    side = min(24.0, max(5.0, 0.45 * n + 2))
    fig = Figure(figsize=(side, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    image = ax.imshow(share.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 40:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", color=color, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "confusion matrix")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


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
    **overrides: Any,
) -> dict[str, Any]:
    """Evaluate a run's weights on `data` (default: the run's own validation split).

    A weights file without our metadata (a torchvision/timm/CIFAR `.pth`) needs `model` to name
    its network (with model `overrides` such as in_channels). The network runs through
    `resnets.optimize(mode="infer")` (BN folded, channels-last, autocast at `precision`; compiled
    if `compile`, which defaults to on for CUDA only). Returns top1, top5, loss, count, per_class and the
    confusion-matrix PNG path.
    """
    from resnets.data import load_data, make_loader
    from resnets.fast import optimize
    from resnets.train.device import resolve_device
    from resnets.train.run_dir import read_run_config
    from resnets.weights import find_weights, load_model

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
    batch_size = batch_size or (config.batch_size if config is not None else 256)
    dev = resolve_device(device)
    if data is None:
        assert config is not None
        dataset = _load_like_run(config, data_dir)
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
                f"{data}: its classes ({_preview(dataset.classes)}) are not the {len(meta.classes)} "
                f"classes the model was trained on ({_preview(meta.classes)}); "
                "'resnets convert --classes FILE' records other names"
            )
    # Preprocess exactly as in training: the run's own statistics and input size.
    dataset.mean, dataset.std = tuple(meta.mean or dataset.mean), tuple(meta.std or dataset.std)
    if meta.resize_size:
        dataset.resize_size = meta.resize_size
    if dataset.in_channels != net.spec.in_channels:
        raise DataError(
            f"{data}: {dataset.in_channels}-channel images, but the model takes {net.spec.in_channels}"
        )
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
    out_dir = Path(out) if out is not None else (run_dir or weights.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "confusion_matrix.png"
    plot_confusion(png, result.confusion, dataset.classes, title=f"{meta.model} on {name}")
    report["confusion_matrix"] = str(png)
    return report


def _load_like_run(config, data_dir: str | None):
    from resnets.data import load_data
    from resnets.models.create import resolve_spec
    from resnets.models.zoo import default_input_size

    return load_data(
        config.data,
        input_size=config.input_size,
        val_split=config.val_split,
        split_seed=config.split_seed,
        data_dir=data_dir or config.data_dir,
        synthetic_count=config.synthetic_count,
        synthetic_classes=config.synthetic_classes,
        default_size=default_input_size(resolve_spec(config.model)),
    )


def _single_size(size) -> int | None:
    if size is None:
        return None
    return int(size[0]) if isinstance(size, list) else int(size)


def _preview(names: list[str]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
