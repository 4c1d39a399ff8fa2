"""The training loop: one function, read top to bottom (nanoGPT style).

    for each epoch:                       data order and augmentation from (seed, epoch)
        for each optimizer step:          this rank's micro-batches of the global batch
            lr = schedule(step)           a pure function of the step
            step(micro-batches)           mix, forward, loss, guard, backward (DDP all-reduces on
                                          the last micro-batch), clip, optimizer step, EMA
                                          (step.py; one CUDA graph when it can be)
            sums += its stats             on the device: no host sync per step
            checkpoint                    every --checkpoint-every-steps, mid-epoch too
        evaluate, reduce, log             one row per epoch, every validation image once
        checkpoint                        safetensors + JSON, atomic, by rank 0

What the loop works with is a `Run` (build.py: data, model, DDP wrapper, the step, loaders,
schedule); the resumable state is a `TrainState` (state.py, files: checkpoint.py); rank awareness
lives in ranks.py (only the main process writes), the process group and DDP in distributed.py,
starting processes and choosing the run directory in launch.py, the run directory's files in
run_dir.py and logging.py.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch

from resnets.atomic import write_json
from resnets.data import make_loader
from resnets.plots import plot_curves
from resnets.runtime.metrics import Evaluation, evaluate
from resnets.train import distributed, ranks
from resnets.train.build import Run, build_run
from resnets.train.config import TrainConfig
from resnets.train.device import seed_python, set_determinism
from resnets.train.logging import RunLog, check_tensorboard, format_duration
from resnets.train.run_dir import run_record
from resnets.train.schedule import Schedule
from resnets.train.state import TrainState, restore, save
from resnets.train.step import set_lr
from resnets.weights.format import WeightsMeta, save_weights


def train_here(
    config: TrainConfig,
    run_dir: Path,
    device: torch.device,
    *,
    resume: bool = False,
    console: bool = False,
    table_stream: TextIO | None = None,
    stop_after_epoch: int | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """This process's part of a run into `run_dir` on `device` (the process group, if any, is
    joined): build it, restore it when `resume`, train it, finish it; return the summary.

    `console` shows the progress bar (stderr) and the table rows (`table_stream`, default stdout).
    `stop_after_epoch` ends the call after that epoch with a checkpoint, as an interruption would.
    """
    config.validate()
    if config.tensorboard:
        check_tensorboard()
    set_determinism(config, device)
    run = build_run(config, run_dir, device)
    seed_python(config)
    state = TrainState()
    if resume:
        state = restore(run.checkpoint_dir, run.model, run.optimizer, run.scaler, run.ema, device)
    if run.world_size > 1:
        distributed.seed_rank(config.seed, state.step)
    if not resume and run.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / "config.json", run_record(config, run.data, run.model, device, command, run.world_size)
        )
    log = RunLog(
        run_dir,
        console=console and run.main,
        table_stream=table_stream,
        tensorboard=config.tensorboard and run.main,
    )
    try:
        return train_loop(run, state, log, stop_after_epoch=stop_after_epoch)
    finally:
        log.close()


def train_loop(
    run: Run, state: TrainState, log: RunLog, *, stop_after_epoch: int | None = None
) -> dict[str, Any]:
    """Train `run` from `state` to the end of its schedule (or `stop_after_epoch`); return the summary."""
    config, accum = run.config, run.config.accum_steps
    lr = run.schedule(state.step, state.warmup_done)
    for epoch in range(state.epoch, run.epochs):
        # --- one epoch of training -----------------------------------------------------------
        run.model.train()
        # loss total, correct, images (on the device); rank 0 carries a resumed epoch's share
        carried = state.epoch_sums if run.main else [0.0, 0.0, 0.0]
        sums = torch.tensor(carried, dtype=torch.float64, device=run.device)
        start, last_shown = time.perf_counter(), 0.0
        done = state.epoch_step
        steps = min(run.steps_per_epoch - done, run.schedule.total_steps - state.step)
        bar = log.bar(epoch + 1, run.epochs, steps)
        micro_batches = itertools.islice(run.train_loader.epoch(epoch, skip=done * accum), steps * accum)
        for batches in groups_of(micro_batches, accum):
            lr = run.schedule(state.step, state.warmup_done)
            set_lr(run.optimizer, lr)
            stats, applied = run.step(batches, state.step + 1)
            sums += stats
            if not applied:  # --skip-nonfinite dropped this step's update
                state.skipped_steps.append(state.step + 1)
                continue
            state.step += 1
            state.epoch_step += 1
            if config.warmup_until_error is not None and not state.warmup_done:
                correct, seen = ranks.reduce_sums(sums[1:]).tolist()
                state.warmup_done = 1 - correct / seen < config.warmup_until_error
            every = config.checkpoint_every_steps
            if every and state.step % every == 0 and state.epoch_step < run.steps_per_epoch:
                state.epoch_sums = ranks.reduce_sums(sums).tolist()
                run.guard.check()  # a NaN since the last check stops here, naming its step, unsaved
                if run.main:
                    checkpoint(run, state, mid_epoch=True)
            bar.update(1)
            if time.perf_counter() - last_shown > 0.5:
                last_shown = time.perf_counter()
                run.guard.check()
                bar.set_postfix_str(progress_text(sums, start, state, run.schedule, epoch_steps=bar.n))
        bar.close()
        run.guard.check()
        train_seconds = time.perf_counter() - start

        # --- evaluate, reduce, log, checkpoint ----------------------------------------------
        distributed.broadcast_buffers(run.eval_model)  # one model on every rank, the one rank 0 saves
        val = evaluate_model(run, run.val_loader)
        totals = ranks.reduce_sums(torch.cat([sums, sums[2:] - carried[2]]))
        images, images_now = int(totals[2].item()), int(totals[3].item())  # the epoch's; this call's
        seconds = time.perf_counter() - start
        state.epoch, state.epoch_step, state.epoch_sums = epoch + 1, 0, [0.0, 0.0, 0.0]
        state.train_seconds += seconds
        state.step_seconds += train_seconds
        state.images_seen += images_now  # over step_seconds, which also counts this call only
        skipped = sorted(set(run.train_loader.skipped) | set(run.val_loader.skipped))
        row = {
            "epoch": state.epoch,
            "step": state.step,
            "lr": lr,
            "train_loss": (totals[0] / max(images, 1)).item(),
            "train_top1": (totals[1] / max(images, 1)).item(),
            "val_loss": val.loss,
            "val_top1": val.top1,
            "val_top5": val.top5,
            "val_images": val.count,
            "images_per_second": images_now / max(train_seconds, 1e-9),
            "seconds": seconds,
            "skipped": len(run.train_loader.skipped) + len(run.val_loader.skipped),
            "skipped_files": skipped,
        }
        state.history.append(row)
        if run.main:
            log.epoch(row, state.history, run.epochs)
            by_steps = config.checkpoint_every_steps and state.step % config.checkpoint_every_steps == 0
            if (
                state.epoch == run.epochs
                or by_steps
                or state.epoch % config.checkpoint_every == 0
                or state.epoch == stop_after_epoch
            ):
                checkpoint(run, state)
        if stop_after_epoch is not None and state.epoch >= stop_after_epoch and state.epoch < run.epochs:
            return {"run_dir": str(run.run_dir), "epochs": state.epoch, "stopped": True}

    # --- the end: weights, curves, summary -----------------------------------------------------
    return finish(run, state)


# --- the pieces the loop is built from ---------------------------------------------------------

T = TypeVar("T")


def groups_of(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """Consecutive lists of `n` items (a last, shorter group too): one optimizer step's micro-batches."""
    it = iter(items)
    while group := list(itertools.islice(it, n)):
        yield group


def checkpoint(run: Run, state: TrainState, *, mid_epoch: bool = False) -> None:
    """Save everything a resume needs into the run's checkpoint folder (rank 0 calls this)."""
    save(run.checkpoint_dir, run.config, state, run.model, run.optimizer, run.scaler, run.ema, mid_epoch)


def evaluate_model(run: Run, loader) -> Evaluation:
    """Loss, top-1 and top-5 of the run's evaluated model (EMA or raw) on `loader`'s batches,
    summed over every rank's shard."""
    return evaluate(
        run.eval_model,
        loader.epoch(0),
        run.data.num_classes,
        autocast=run.amp,
        channels_last=run.channels_last,
        reduce=ranks.reduce_sums,  # each rank holds a disjoint share of the split
    )


def progress_text(
    sums: torch.Tensor, start: float, state: TrainState, schedule: Schedule, epoch_steps: int
) -> str:
    """The progress bar's postfix: running loss and accuracy, img/s and the time left."""
    loss, correct, count = sums.tolist()
    elapsed = time.perf_counter() - start
    per_step = elapsed / max(epoch_steps, 1)
    eta = per_step * (schedule.total_steps - state.step)
    return (
        f"loss={loss / max(count, 1):.4f} acc={100 * correct / max(count, 1):.1f}% "
        f"img/s={count / max(elapsed, 1e-9):.0f} eta={format_duration(eta)}"
    )


# --- the end of a run --------------------------------------------------------------------------


def finish(run: Run, state: TrainState) -> dict[str, Any]:
    """Write model.safetensors, curves.png and summary.json (rank 0); return the summary."""
    config, data, eval_model = run.config, run.data, run.eval_model
    last = state.history[-1]
    summary: dict[str, Any] = {
        "model": config.model,
        "data": data.name,
        "run_dir": str(run.run_dir),
        "epochs": state.epoch,
        "steps": state.step,
        "val_top1": last["val_top1"],
        "val_top5": last["val_top5"],
        "val_loss": last["val_loss"],
        "val_images": last.get("val_images"),
        "train_top1": last["train_top1"],
        "train_loss": last["train_loss"],
        "best_val_top1": max(r["val_top1"] for r in state.history),
        "best_epoch": max(state.history, key=lambda r: r["val_top1"])["epoch"],
        "train_seconds": state.train_seconds,
        "images_per_second": state.images_seen / max(state.step_seconds, 1e-9),
        "device": str(run.device),
        "world_size": run.world_size,
        "global_batch": config.batch_size,
        "accum_steps": config.accum_steps,
        "precision": config.precision,
        "seed": config.seed,
        "params": sum(p.numel() for p in eval_model.parameters()),
        "skipped_images": sorted({f for r in state.history for f in r.get("skipped_files", [])}),
    }
    if config.eval_crops == 10 and not data.val.in_memory:
        ten = make_loader(
            data,
            "val",
            batch_size=max(1, config.batch_size // 10),
            device=run.device,
            workers=config.workers,
            crops=10,
            rank=ranks.rank(),
            world_size=run.world_size,
        )
        ten_crop = evaluate_model(run, ten)
        summary.update(
            val_top1_10crop=ten_crop.top1, val_top5_10crop=ten_crop.top5, val_loss_10crop=ten_crop.loss
        )
    if not run.main:
        return summary
    save_weights(eval_model, run.run_dir / "model.safetensors", weights_meta(run, last["val_top1"]))
    plot_curves(run.run_dir / "curves.png", state.history, title=f"{config.model} on {data.name}")
    write_json(run.run_dir / "summary.json", summary)
    return summary


def weights_meta(run: Run, val_top1: float) -> WeightsMeta:
    """What model.safetensors records beside the weights: the network, its classes and the
    preprocessing that goes with them (so predict, eval and export need nothing else)."""
    data = run.data
    normalization: dict[str, Any] = {"normalize": run.config.normalize}
    if data.mean_image is not None:  # per-pixel mean: mean/std hold its channel means and ones
        normalization["mean_image"] = torch.round(data.mean_image.double(), decimals=6).tolist()
    return WeightsMeta(
        model=run.config.model,
        spec=run.eval_model.spec.to_dict(),
        classes=data.classes,
        mean=list(data.mean),
        std=list(data.std),
        input_size=data.input_size,
        resize_size=data.resize_size,
        extra={
            "color": data.notes.get("color", "RGB"),
            "data": data.name,
            "val_top1": val_top1,
            "ema": run.config.ema_decay is not None,
            "preprocess": "resize to input_size"
            if data.resize_size is None
            else "resize shorter side to resize_size, centre crop input_size",
            **normalization,
        },
    )
