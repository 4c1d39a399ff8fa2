"""Top-1, top-5, loss and a confusion matrix of a network over batches: what training's
per-epoch evaluation and `resnets eval` both compute."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnets.errors import DataError


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
def evaluate_multiscale(
    model: nn.Module, scales: Iterable[Iterable[tuple[torch.Tensor, torch.Tensor]]], num_classes: int
) -> Evaluation:
    """Fully-convolutional multi-scale testing (He et al. 2015, sec. 3.4): the softmax scores
    of each image averaged over scales, then loss, top-1/top-5 and confusion as `evaluate`.

    `scales` holds one iterable of batches per scale, each over the same images in the same
    order (N, C, H_s, W_s), with their labels; with global average pooling before the fc, the
    network applied to a whole image is the fully-convolutional form (the fc at every position,
    averaged). Raises DataError when the scales disagree on the images or hold none.
    """
    was_training = model.training
    model.eval()
    total: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    count = 0
    for batches in scales:
        probs, ys = [], []
        for x, y in batches:
            probs.append(F.softmax(model(x).float(), 1))
            ys.append(y)
        if not ys:
            raise DataError("no images to evaluate (all unreadable or an empty split)")
        p, y = torch.cat(probs), torch.cat(ys)
        if labels is not None and not torch.equal(labels, y):
            raise DataError("multi-scale testing: the scales did not read the same images")
        total, labels, count = (p if total is None else total + p), y, count + 1
    model.train(was_training)
    if total is None or labels is None:
        raise DataError("multi-scale testing needs at least one scale")
    log_probs = (total / count).clamp_min(1e-12).log()
    return evaluate(model, [(log_probs, labels)], num_classes, scores=True)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches,
    num_classes: int,
    *,
    autocast=None,
    channels_last: bool = False,
    reduce=None,
    scores: bool = False,
) -> Evaluation:
    """Mean cross-entropy, top-1/top-5 accuracy and confusion counts over `batches`.

    A batch of shape (N, K, C, H, W) holds K crops per image (10-crop testing, sec. 3.4): their
    softmax scores are averaged. `reduce` sums the per-process totals (see train/ranks.py).
    With `scores`, each batch holds log-probabilities (N, num_classes) already, not images.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss total, top-5 hits, count
    for x, y in batches:
        if scores:
            log_probs, y = x.to(device), y.to(device)
        else:
            log_probs = _log_probs(model, x, num_classes, autocast, channels_last)
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


def _log_probs(model: nn.Module, x: torch.Tensor, num_classes: int, autocast, channels_last: bool):
    """Log-softmax scores of a batch (N, C, H, W), or of K crops an image (N, K, C, H, W) with
    their softmax scores averaged."""
    crops = x.shape[1] if x.dim() == 5 else 1
    x = x.flatten(0, 1) if crops > 1 else x
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast or nullcontext():
        logits = model(x)
    logits = logits.float()
    if crops > 1:
        return F.softmax(logits, 1).view(-1, crops, num_classes).mean(1).clamp_min(1e-12).log()
    return F.log_softmax(logits, 1)
