"""What a run reports: a progress bar per epoch, a table row per epoch, metrics.csv, curves.png,
and optionally TensorBoard.

metrics.csv is rewritten after every epoch; so is curves.png, except that it waits until
`CURVES_EVERY_S` seconds have passed since it was last drawn (drawing takes about half a second,
which would slow a run of few-second epochs by a sixth). It is always drawn after the last
epoch and when the run stops for any reason (`close`), so an interrupted run keeps its curves.

The loop hands each epoch's numbers to `RunLog`; the console part (tqdm on stderr, rows on
stdout) is switched on by the CLI only, so the library stays silent when called from Python.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from resnets.atomic import write_text
from resnets.errors import ResNetsError
from resnets.plots import plot_curves
from resnets.text import shorten

CURVES_EVERY_S = 10.0

COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "images_per_second",
    "seconds",
    "skipped",
)
# What TensorBoard plots against the step: every number of a row but the counters and timing.
SCALARS = tuple(c for c in COLUMNS if c not in ("epoch", "step", "seconds", "skipped"))
# (header, width, format) of the console table; accuracies in percent.
TABLE = (
    ("epoch", 7, "{:>7}"),
    ("step", 8, "{:>8}"),
    ("lr", 9, "{:>9.5f}"),
    ("train_loss", 10, "{:>10.4f}"),
    ("train_top1", 10, "{:>9.2f}%"),
    ("val_loss", 9, "{:>9.4f}"),
    ("val_top1", 9, "{:>8.2f}%"),
    ("val_top5", 9, "{:>8.2f}%"),
    ("img/s", 8, "{:>8.0f}"),
    ("seconds", 8, "{:>7.1f}s"),
)


def format_header() -> str:
    return "  ".join(f"{name:>{width}}" for name, width, _ in TABLE)


def format_row(row: dict[str, Any], epochs: int) -> str:
    values = (
        f"{row['epoch']}/{epochs}",
        row["step"],
        row["lr"],
        row["train_loss"],
        100 * row["train_top1"],
        row["val_loss"],
        100 * row["val_top1"],
        100 * row["val_top5"],
        row["images_per_second"],
        row["seconds"],
    )
    return "  ".join(fmt.format(v) for (_, _, fmt), v in zip(TABLE, values))


def skipped_text(files: list[str]) -> str:
    return f"skipped {len(files)} unreadable image(s) this epoch: {shorten(files, 10)}"


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunLog:
    """Per-epoch reporting of one run into `run_dir` (and the console when `console`)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        console: bool = False,
        table_stream: TextIO | None = None,
        tensorboard: bool = False,
        curves_title: str = "",
    ) -> None:
        self.run_dir = run_dir
        self.console = console
        self.table_stream = table_stream or sys.stdout
        self.writer = open_tensorboard(run_dir) if tensorboard else None
        self._printed_header = False
        self.curves_title = curves_title
        self._history: Sequence[dict[str, Any]] = []
        self._drawn: tuple[int, float] = (0, -CURVES_EVERY_S)  # (epochs drawn, when)

    def bar(self, epoch: int, epochs: int, steps: int):
        """A tqdm bar for one epoch on stderr (disabled when not on a terminal, or not console)."""
        return self._bar(steps, f"epoch {epoch}/{epochs}", "step")

    def eval_bar(self, epoch: int, epochs: int, batches: int):
        """A tqdm bar over the validation batches after an epoch (as `bar`)."""
        return self._bar(batches, f"eval {epoch}/{epochs}", "batch")

    def _bar(self, total: int, desc: str, unit: str):
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            leave=False,
            file=sys.stderr,
            disable=True if not self.console else None,
            dynamic_ncols=True,
        )

    def note(self, text: str) -> None:
        """One line on stderr before training (console only): a fact the user should know, such
        as whether warm-up is on or what a resume changed."""
        if self.console:
            print(f"note: {text}", file=sys.stderr, flush=True)

    def epoch(self, row: dict[str, Any], history: Sequence[dict[str, Any]], epochs: int) -> None:
        """metrics.csv rewritten with `history`, curves.png too (at most every CURVES_EVERY_S
        seconds but after the last epoch); on the console the table row (and the header first)
        and, on stderr, the unreadable images the epoch skipped."""
        write_metrics_csv(self.run_dir / "metrics.csv", history)
        self._history = history
        if row["epoch"] >= epochs or time.monotonic() - self._drawn[1] >= CURVES_EVERY_S:
            self.draw_curves()
        if self.console:
            if not self._printed_header:
                print(format_header(), file=self.table_stream, flush=True)
                self._printed_header = True
            print(format_row(row, epochs), file=self.table_stream, flush=True)
            if row.get("skipped_files"):
                print(skipped_text(row["skipped_files"]), file=sys.stderr, flush=True)
        if self.writer is not None:
            for key in SCALARS:
                self.writer.add_scalar(key, row[key], row["step"])
            self.writer.flush()

    def draw_curves(self) -> None:
        """Write curves.png from the epochs logged so far."""
        if self._history:
            plot_curves(self.run_dir / "curves.png", self._history, title=self.curves_title)
            self._drawn = (len(self._history), time.monotonic())

    def close(self) -> None:
        """Draw the curves of epochs not drawn yet (a run that stops keeps them) and close
        TensorBoard."""
        try:
            if len(self._history) > self._drawn[0]:
                self.draw_curves()
        finally:
            if self.writer is not None:
                self.writer.close()


def open_tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ResNetsError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


def check_tensorboard() -> None:
    """Fail before training, not after the first epoch, when TensorBoard is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ResNetsError("--tensorboard needs the tensorboard package: pip install tensorboard") from None


def write_metrics_csv(path: Path, history: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: _csv_value(row.get(k)) for k in COLUMNS})
    write_text(path, buffer.getvalue())


def _csv_value(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value
