"""`resnets analyze responses`: the layer responses of Fig. 7 for any one run or weights file,
on its own test images (or other data), as a table, a CSV and a plot."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnets.atomic import write_text
from resnets.data import make_loader
from resnets.evaluate import load_for_eval
from resnets.inspect.responses import LayerResponse, layer_responses
from resnets.plots import figure, save_figure
from resnets.runtime.device import resolve_device


@dataclass
class Responses:
    """The responses of one network (`label`) over `images` images of `data`."""

    label: str
    weights: str
    data: str
    images: int
    layers: list[LayerResponse]

    @property
    def mean_std(self) -> float:
        """The mean over layers of the response std: one number to compare networks by."""
        return sum(r.std for r in self.layers) / len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.label,
            "weights": self.weights,
            "data": self.data,
            "images": self.images,
            "mean_std": self.mean_std,
            "layers": [r.to_dict() for r in self.layers],
        }


def analyze_responses(
    path: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    model: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    workers: int | None = None,
) -> Responses:
    """The std of each 3x3 layer's response after BN (He et al. 2015, sec. 4.2, Fig. 7) of the
    network in `path` (a run directory or weights file; `model` names a foreign file's network)
    over `data` (default: the run's own validation split, the test set of paper-cifar runs),
    preprocessed as its weights record. Eager model on `device`, `batch_size` images a batch.

    Raises WeightsError, DataError (as evaluate.load_for_eval) and InputError for a network
    without responses after BN (pre-activation).
    """
    loaded = load_for_eval(path, data=data, data_dir=data_dir, model=model)
    dev = resolve_device(device)
    loader = make_loader(
        loaded.data, "val", batch_size=batch_size, device=dev, workers=workers, preprocess=loaded.preprocess
    )
    layers = layer_responses(loaded.net.to(dev), loader.epoch(0))
    return Responses(
        label=loaded.meta.model,
        weights=str(loaded.weights),
        data=loaded.name,
        images=len(loaded.data.val) - len(loader.skipped),
        layers=layers,
    )


def responses_csv(all_responses: list[Responses]) -> str:
    """One row per network and layer: model, index, name, stage, channels, std, mean."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "index", "layer", "stage", "channels", "std", "mean"])
    for responses in all_responses:
        for r in responses.layers:
            writer.writerow(
                [responses.label, r.index, r.name, r.stage, r.channels, f"{r.std:.6g}", f"{r.mean:.6g}"]
            )
    return buffer.getvalue()


def plot_responses(path: Path, all_responses: list[Responses], title: str = "") -> None:
    """Fig. 7 as the paper draws it: each network's response std against the layer index (top)
    and sorted in descending order (bottom)."""
    fig = figure(9, 7)
    top, bottom = fig.subplots(2, 1)
    for responses in all_responses:
        stds = [r.std for r in responses.layers]
        style = "--" if responses.label.lower().startswith("plain") else "-"
        top.plot(range(1, len(stds) + 1), stds, style, label=responses.label)
        bottom.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), style, label=responses.label)
    top.set(xlabel="layer index (original)", ylabel="std")
    bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def write_responses(folder: Path, responses: Responses) -> dict[str, str]:
    """responses.csv and responses.png for one network in `folder`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "responses.csv", responses_csv([responses]))
    plot_responses(folder / "responses.png", [responses], title=f"{responses.label}: layer responses")
    return {"csv": str(folder / "responses.csv"), "png": str(folder / "responses.png")}
