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
import math
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import torch

from resnets.atomic import write_json
from resnets.data import make_loader
from resnets.errors import ResNetsError
from resnets.runtime.metrics import Evaluation, evaluate
from resnets.train import distributed, ranks
from resnets.train.build import Run, build_run
from resnets.train.config import TrainConfig
from resnets.train.device import seed_python, set_determinism
from resnets.train.guards import Activity, failures_named
from resnets.train.logging import RunLog, check_tensorboard, format_duration
from resnets.train.resume import describe_changes
from resnets.train.run_dir import read_run_config, record_resume, run_record, write_split
from resnets.train.schedule import Schedule, relaid
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

    Nothing is written until the run is built and every check has passed (preflight.py). A resume
    continues with `config`, which may differ from the run's recorded one as resume.py allows:
    a new length re-lays the schedule (schedule.relaid), and config.json records the change.
    Inside the loop, Ctrl-C and unexpected errors become one line naming the last checkpoint
    and the resume command (guards.failures_named).

    `console` shows the progress bar (stderr) and the table rows (`table_stream`, default stdout).
    `stop_after_epoch` ends the call after that epoch with a checkpoint, as an interruption would.
    """
    config.validate()
    if config.tensorboard:
        check_tensorboard()
    set_determinism(config, device)
    recorded = read_run_config(run_dir) if resume else None
    run = build_run(config, run_dir, device)
    seed_python(config)
    state = TrainState()
    if resume:
        state = restore(run.checkpoint_dir, run.model, run.optimizer, run.scaler, run.ema, device)
        continue_schedule(run, state, recorded)
    if run.world_size > 1:
        distributed.seed_rank(config.seed, state.step)
    if resume:
        distributed.barrier()  # every rank has read the recorded config before rank 0 updates it
    if run.main:
        if not resume:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_split(run_dir, run.data)  # first: a run directory with a config.json has its split.json
            write_json(
                run_dir / "config.json",
                run_record(run.config, run.data, run.model, device, command, run.world_size),
            )
        elif recorded is not None and (changed := resume_changes(recorded, run.config)):
            record_resume(run_dir, run.config, changed, command, device, run.world_size, state.step)
            run.notes.insert(0, f"resumed at step {state.step} with {describe_changes(changed)}")
            if "epochs" in changed or "iterations" in changed:
                run.notes.extend(set_aside_final_files(run_dir, state.epoch))
    log = RunLog(
        run_dir,
        console=console and run.main,
        table_stream=table_stream,
        tensorboard=config.tensorboard and run.main,
        curves_title=f"{config.model} on {run.data.name}",
    )
    for note in run.notes:
        log.note(note)
    activity = Activity()
    try:
        with failures_named(run_dir, activity, run.world_size):
            return train_loop(run, state, log, stop_after_epoch=stop_after_epoch, activity=activity)
    finally:
        log.close()


def continue_schedule(run: Run, state: TrainState, recorded: TrainConfig | None) -> None:
    """Set `run`'s schedule for a resume from `state`: the run's own (with the restart point an
    earlier extension laid, if any), or, when the length changed from `recorded`, the schedule
    laid again from the current step (schedule.relaid, said in the run's notes)."""
    config, per_epoch = run.config, run.steps_per_epoch
    schedule = Schedule.from_config(config, per_epoch, state.schedule_restart)
    if recorded is not None and (recorded.epochs, recorded.iterations) != (config.epochs, config.iterations):
        if schedule.total_steps <= state.step:
            raise ResNetsError(
                f"{run.run_dir} has trained {state.step} steps ({state.epoch} epochs) already; the new "
                f"length ends at step {schedule.total_steps}: give --epochs or --iterations beyond that"
            )
        before = Schedule.from_config(recorded, per_epoch, state.schedule_restart)
        schedule, line = relaid(before, schedule, state.step)
        state.schedule_restart = list(schedule.restart) if schedule.restart else state.schedule_restart
        run.notes.append(line)
    run.schedule = schedule
    run.epochs = math.ceil(schedule.total_steps / per_epoch)


def resume_changes(recorded: TrainConfig, config: TrainConfig) -> dict[str, Any]:
    """{field: (old, new)} for what a resume changes of the recorded config (`out` aside)."""
    return {
        k: (v, getattr(config, k))
        for k, v in recorded.to_dict().items()
        if k != "out" and v != getattr(config, k)
    }


def set_aside_final_files(run_dir: Path, epoch: int) -> list[str]:
    """A finished run that is extended keeps its final weights and summary under their epoch
    (model-epoch-0012.safetensors, summary-epoch-0012.json): until the longer run ends, `eval`,
    `predict` and `export` then use its newest checkpoint instead of the older final weights."""
    moved = []
    for name in ("model.safetensors", "summary.json"):
        path = run_dir / name
        if path.is_file():
            kept = path.with_name(f"{path.stem}-epoch-{epoch:04d}{path.suffix}")
            os.replace(path, kept)
            moved.append(f"{name} -> {kept.name}")
    return [f"the finished run's files are kept: {', '.join(moved)}"] if moved else []


def train_loop(
    run: Run,
    state: TrainState,
    log: RunLog,
    *,
    stop_after_epoch: int | None = None,
    activity: Activity | None = None,
) -> dict[str, Any]:
    """Train `run` from `state` to the end of its schedule (or `stop_after_epoch`); return the
    summary. `activity` follows what the loop is doing, for the message if something fails."""
    config, accum = run.config, run.config.accum_steps
    now = activity if activity is not None else Activity()
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
        now.training(state.step + 1)
        for batches in groups_of(micro_batches, accum):
            now.training(state.step + 1)
            lr = run.schedule(state.step, state.warmup_done)
            set_lr(run.optimizer, lr)
            stats, applied = run.step(batches, state.step + 1)
            sums += stats
            if not applied:  # --skip-nonfinite (or a too-small folder batch) dropped the update
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
        now.doing(f"evaluation after epoch {epoch + 1}")
        distributed.broadcast_buffers(run.eval_model)  # one model on every rank, the one rank 0 saves
        val = evaluate_model(run, run.val_loader, log.eval_bar(epoch + 1, run.epochs, len(run.val_loader)))
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
            now.doing(f"logging epoch {state.epoch}")
            log.epoch(row, state.history, run.epochs)
            now.doing(f"the checkpoint of epoch {state.epoch}")
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

    # --- the end: weights, summary -------------------------------------------------------------
    now.doing("writing the final weights and summary")
    return finish(run, state)


# --- the pieces the loop is built from ---------------------------------------------------------

T = TypeVar("T")


def groups_of(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """Consecutive lists of `n` items (a last, shorter group too): one optimizer step's micro-batches."""
    it = iter(items)
    while group := list(itertools.islice(it, n)):
        yield group


def checkpoint(run: Run, state: TrainState, *, mid_epoch: bool = False) -> None:
    """Save everything a resume needs into the run's checkpoint folder (rank 0 calls this). The
    tensor file also carries the metadata model.safetensors would (weights_meta), naming which of
    its weights are the run's, so `eval`, `predict` and `export` can use an unfinished run; the
    JSON record carries the data split's summary."""
    val_top1 = state.history[-1]["val_top1"] if state.history else None
    meta = weights_meta(run, val_top1)
    meta.extra["checkpoint_weights"] = "ema.module." if run.ema is not None else "model."
    meta.extra["checkpoint"] = {"epoch": state.epoch, "epochs": run.epochs, "step": state.step}
    split = run.data.split.summary() if run.data.split is not None else None
    save(
        run.checkpoint_dir,
        run.config,
        state,
        run.model,
        run.optimizer,
        run.scaler,
        run.ema,
        mid_epoch,
        weights_header=meta.to_header(),
        record={"data_split": split},
    )


def evaluate_model(run: Run, loader, bar=None) -> Evaluation:
    """Loss, top-1 and top-5 of the run's evaluated model (EMA or raw) on `loader`'s batches,
    summed over every rank's shard; `bar` (a tqdm) counts the batches."""
    batches = loader.epoch(0) if bar is None else counted(loader.epoch(0), bar)
    return evaluate(
        run.eval_model,
        batches,
        run.data.num_classes,
        autocast=run.amp,
        channels_last=run.channels_last,
        reduce=ranks.reduce_sums,  # each rank holds a disjoint share of the split
    )


def counted(items: Iterable[T], bar) -> Iterator[T]:
    """`items`, ticking `bar` after each, and closing it at the end."""
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


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
    write_json(run.run_dir / "summary.json", summary)
    return summary


def weights_meta(run: Run, val_top1: float | None) -> WeightsMeta:
    """What model.safetensors records beside the weights: the network, its classes and the
    preprocessing that goes with them (so predict, eval and export need nothing else)."""
    data = run.data
    meta = WeightsMeta(
        model=run.config.model,
        spec=run.eval_model.spec.to_dict(),
        classes=data.classes,
        extra={"data": data.name, "val_top1": val_top1, "ema": run.config.ema_decay is not None},
    )
    meta.preprocess = data.preprocess()  # what validation used: eval, predict and export use it too
    return meta
