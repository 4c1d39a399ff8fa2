"""Top-1, top-5, loss and a confusion matrix of a network over batches: what training's
per-epoch evaluation and `resnets eval` both compute."""

from __future__ import annotations

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
