"""`reproduce(experiment)`: what `resnets reproduce` does. Plan the runs, reuse the finished
ones, resume the interrupted ones, train the rest, write the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from resnets.errors import DataError, ResNetsError
from resnets.reproduce.plan import (
    EXPERIMENTS,
    SCALES,
    Scale,
    default_out,
    network_label,
    run_config,
    run_name,
)
from resnets.reproduce.report import Context, Report, write_curves, write_fig7, write_table6
from resnets.reproduce.responses import Responses, analyze_responses
from resnets.reproduce.runs import (
    FINISHED,
    Estimate,
    PlannedRun,
    estimate,
    find_run,
    read_result,
    run_training,
)
from resnets.runtime.device import resolve_device
from resnets.train.build import load_training_data


@dataclass
class Event:
    """What a reproduction tells its caller as it goes.

    kind "plan": `runs` planned, `estimate` for those left (`reused` finished already);
    "start": run `index` of `total` begins (`run`, resumed or not); "done": it ended after
    `seconds` with `test_error` (or was reused: `reused`); "measure": fig7 measures a network.
    """

    kind: str
    index: int = 0
    total: int = 0
    run: PlannedRun | None = None
    estimate: Estimate | None = None
    seconds: float = 0.0
    test_error: float | None = None
    reused: bool = False
    label: str = ""


def default_scale(device: str = "auto") -> str:
    """paper on a GPU, smoke otherwise."""
    return "paper" if resolve_device(device).type == "cuda" else "smoke"


def default_data(scale: str) -> str:
    """The bundled digits for the smoke scale (no download), CIFAR-10 for the paper's."""
    return "cifar10" if scale == "paper" else "digits"


def reproduce(
    experiment: str,
    *,
    data: str | None = None,
    scale: str | Scale | None = None,
    seeds: int = 1,
    depths: Sequence[int] | None = None,
    device: str = "auto",
    out: str | Path | None = None,
    data_dir: str = "data",
    download: bool = False,
    iterations: int | None = None,
    threads: int | None = None,
    console: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> Report:
    """Run one of the paper's CIFAR experiments (`table6`, `fig1`, `fig6`, `fig7`; plan.EXPERIMENTS)
    and write its report into `out`; return the report (files and findings).

    Each network is trained `seeds` times (seeds 0..seeds-1) with the paper-cifar recipe at
    `scale` ("smoke", "paper" or a plan.Scale; default: paper on a GPU, smoke otherwise; its
    schedule shortened to `iterations` if given) on `data` (digits, cifar10 in `data_dir`, or a
    folder; default: digits for smoke, cifar10 for paper), into out/runs/<network>-seed<k>
    (default out: reproduction/<data>-<scale>). A finished run found there is reused, an
    interrupted one resumed from its last checkpoint. `depths` replaces the experiment's depths
    for each of its families. `threads` sets torch's CPU threads (in this process: the training,
    the timing and the measuring; a run's `threads` does not make it another run). `on_event`
    hears of the plan (with the expected time), each run's start and end; `console` shows
    training's progress bar.

    Raises ResNetsError for an unknown experiment or depth, data that cannot be read, or an out
    folder holding runs of another configuration.
    """
    if experiment not in EXPERIMENTS:
        raise ResNetsError(f"unknown experiment {experiment!r}; choose from {', '.join(EXPERIMENTS)}")
    if seeds < 1:
        raise ResNetsError("--seeds must be >= 1")
    if threads is not None:
        if threads < 1:
            raise ResNetsError("--threads must be >= 1")
        torch.set_num_threads(threads)
    exp = EXPERIMENTS[experiment]
    if scale is None:
        scale = default_scale(device)
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ResNetsError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
        scale = SCALES[scale]
    scale = scale.with_iterations(iterations)
    data = data or default_data(scale.name)
    folder = Path(out) if out is not None else default_out(data, scale.name)
    notify = on_event or (lambda event: None)

    runs = []
    for model in exp.networks(tuple(depths) if depths else None):
        for seed in range(seeds):
            config = run_config(
                model, seed, data=data, scale=scale, device=device, data_dir=data_dir, download=download
            ).replace(threads=threads)
            runs.append(find_run(model, seed, config, folder / "runs" / run_name(model, seed)))
    try:
        dataset = load_training_data(runs[0].config)  # fails here, before any training, if unreadable
    except DataError as exc:
        if "no validation data" not in str(exc):
            raise
        # the loader's advice (--val-split) is a train flag: the paper's numbers need a test split
        raise DataError(
            f"{data}: no test images; reproduce needs an ImageFolder with train/<class>/... and "
            "test/<class>/... (or val/), or a CIFAR python folder"
        ) from None
    folder.mkdir(parents=True, exist_ok=True)  # and here, before any training, if unwritable
    shape = (dataset.in_channels, dataset.input_size, dataset.input_size)
    expected = estimate(runs, shape, len(dataset.val), len(dataset.train))
    notify(Event("plan", total=len(runs), estimate=expected, reused=sum(r.state == FINISHED for r in runs)))

    results = []
    for index, run in enumerate(runs, 1):
        reused = run.state == FINISHED
        start = time.perf_counter()
        if not reused:
            notify(Event("start", index, len(runs), run))
            run_training(run, console=console)
            run.state = FINISHED
        result = read_result(run)
        seconds = result.seconds if reused else time.perf_counter() - start
        notify(
            Event("done", index, len(runs), run, seconds=seconds, test_error=result.test_error, reused=reused)
        )
        results.append(result)

    context = Context(
        experiment=exp,
        scale=scale,
        data=describe_data(dataset),
        seeds=seeds,
        device=str(resolve_device(device)),
        torch_version=torch.__version__,
    )
    if experiment == "table6":
        return write_table6(folder, results, context)
    if experiment in ("fig1", "fig6"):
        return write_curves(folder, results, context)
    measured = []
    for run in runs:
        if run.seed == 0:
            notify(Event("measure", label=network_label(run.model)))
            responses = analyze_responses(run.run_dir, device=device)
            measured.append(_relabel(responses, network_label(run.model)))
    return write_fig7(folder, results, measured, context)


def _relabel(responses: Responses, label: str) -> Responses:
    responses.label = label
    return responses


def describe_data(data: Any) -> str:
    """'digits: 1,437 training and 360 test images, 16x16, 1 channel'."""
    channels = f"{data.in_channels} channel{'s' if data.in_channels != 1 else ''}"
    return (
        f"{data.name}: {len(data.train):,} training and {len(data.val):,} test images, "
        f"{data.input_size}x{data.input_size}, {channels}"
    )
