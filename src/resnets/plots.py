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
    """curves.png: `curves_figure` of a run's per-epoch `history` (metrics.csv's rows), written
    atomically. The training loop rewrites it as epochs pass, so a long run can be watched and an
    interrupted one keeps it."""
    fig = curves_figure(history, title)
    save_figure(fig, path)


def curves_figure(history: Sequence[dict[str, Any]], title: str = "") -> Any:
    """A matplotlib Figure (Agg) with three panels against epoch: train and val loss (log scale),
    train and val top-1 accuracy (%), and the learning rate at each epoch's end; integer epoch
    ticks, a marker per epoch (a one-epoch run shows its point), and the best validation epoch
    marked on every panel and named in the accuracy panel's title."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    epochs = [r["epoch"] for r in history]
    best = max(history, key=lambda r: r["val_top1"]) if history else None
    fig = figure(14, 4)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    style = dict(marker="o", markersize=3, linewidth=1.2)
    tiny = 1e-8  # a loss of exactly 0 still has a place on the log axis
    loss_ax.plot(epochs, [max(r["train_loss"], tiny) for r in history], label="train", **style)
    loss_ax.plot(epochs, [max(r["val_loss"], tiny) for r in history], label="val", **style)
    loss_ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")  # 0.3, not 3 x 10^-1
    losses = [max(r[k], tiny) for r in history for k in ("train_loss", "val_loss")]
    loss_ax.yaxis.set_major_formatter(plain)  # 0.01, 0.1, 1; within one decade the minor ticks too
    loss_ax.yaxis.set_minor_formatter(plain if losses and max(losses) < 10 * min(losses) else NullFormatter())
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss (log scale)", title="loss")
    acc_ax.plot(epochs, [100 * r["train_top1"] for r in history], label="train", **style)
    acc_ax.plot(epochs, [100 * r["val_top1"] for r in history], label="val", **style)
    acc_ax.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    lr_ax.plot(epochs, [r["lr"] for r in history], color="tab:green", label="lr at the epoch's end", **style)
    lr_ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
    for ax in (loss_ax, acc_ax, lr_ax):
        if epochs and max(epochs) - min(epochs) < 15:
            ax.set_xticks(range(min(epochs), max(epochs) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.grid(alpha=0.3)
        if best is not None:
            ax.axvline(best["epoch"], color="gray", linestyle="--", linewidth=1, label="best val top-1")
        ax.legend(fontsize=8)
    if best is not None:
        acc_ax.set_title(f"accuracy (best val {100 * best['val_top1']:.2f}%, epoch {best['epoch']})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


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
    save_figure(fig, path)
