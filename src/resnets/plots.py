"""The PNG figures we write: training curves and confusion matrices (matplotlib's Agg backend,
no display needed), each written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resnets.atomic import atomic_write


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no display). matplotlib is imported here, when a
    figure is drawn, not when `resnets` is imported (it costs ~0.4 s)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path) -> None:
    """Write a figure as a PNG, atomically (temporary file, fsync, rename)."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_curves(path: Path, history: Sequence[dict[str, Any]], title: str = "") -> None:
    """Loss and top-1 accuracy against epoch, train and val: curves.png (matplotlib, Agg)."""
    epochs = [r["epoch"] for r in history]
    fig = figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_ax.plot(epochs, [r["val_loss"] for r in history], label="val")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    acc_ax.plot(epochs, [100 * r["train_top1"] for r in history], label="train")
    acc_ax.plot(epochs, [100 * r["val_top1"] for r in history], label="val")
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_confusion(path: Path, confusion: torch.Tensor, classes: list[str], title: str = "") -> None:
    """The confusion matrix as a PNG: rows true class, columns predicted, shaded by row share."""
    n = len(classes)
    share = confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)
    side = min(24.0, max(5.0, 0.45 * n + 2))
    fig = figure(side, side)
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
