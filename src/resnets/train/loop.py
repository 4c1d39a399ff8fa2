"""The training loop: one function, the whole step in view (nanoGPT style).

    for each epoch:                       data order and augmentation from (seed, epoch)
        for each micro-batch:             this rank's share of the global batch
            lr = schedule(step)           a pure function of the step
            mix, forward, loss            under autocast
            backward                      DDP all-reduces gradients on the last micro-step only
            clip, step                    through the grad scaler (a no-op unless fp16)
            EMA update, checkpoint        every --checkpoint-every-steps, mid-epoch too
        evaluate, reduce, log             one row per epoch, every validation image once
        checkpoint                        safetensors + JSON, atomic, by rank 0

Rank awareness lives in ranks.py (only the main process writes), the process group, DDP and
restarts in distributed.py, the speed-ups in device.speed_up, the schedule in schedule.py; what a
run is built from in build.py, the resumable state in state.py (files: checkpoint.py), the run
directory in run_dir.py and logging.py.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from resnets.atomic import write_json
from resnets.data import make_loader
from resnets.plots import plot_curves
from resnets.runtime.metrics import evaluate
from resnets.train import distributed, faults, ranks
from resnets.train.build import (
    build_ema,
    build_loaders,
    build_mixing,
    build_model,
    build_optimizer,
    load_training_data,
    split_batch,
)
from resnets.train.config import TrainConfig
from resnets.train.device import (
    autocast,
    set_determinism,
    speed_up,
    to_input,
    use_channels_last,
)
from resnets.train.guards import LossGuard, handle_out_of_memory
from resnets.train.logging import RunLog, check_tensorboard, format_duration
from resnets.train.run_dir import run_record
from resnets.train.schedule import Schedule
from resnets.train.state import TrainState, restore, save
from resnets.weights.format import WeightsMeta, save_weights


@handle_out_of_memory
def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    console: bool = False,
    table_stream: TextIO | None = None,
    stop_after_epoch: int | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Train `config` into `run_dir` (or continue the run there when `resume`); return the summary.

    `console` shows the progress bar (stderr) and the table rows (`table_stream`, default
    stdout). `stop_after_epoch` ends this call after that epoch with a checkpoint, as an interruption
    would; a later `resume=True` call finishes the run. Under torchrun, every process calls this:
    it joins the process group (and leaves it at the end) and trains its share of each batch.
    """
    with distributed.process_group(config.device) as device:
        return _train(config, Path(run_dir), device, resume, console, table_stream, stop_after_epoch, command)


def _train(config, run_dir, device, resume, console, table_stream, stop_after_epoch, command):
    config.validate()
    if config.tensorboard:
        check_tensorboard()
    set_determinism(config, device)
    main, world = ranks.is_main(), ranks.world_size()

    # --- data and model ----------------------------------------------------------------------
    data = load_training_data(config)
    micro_batch = split_batch(config, world, len(data.train))
    model = build_model(config, data)
    channels_last = use_channels_last(config, device)
    ddp = distributed.wrap(model, device, channels_last=channels_last, sync_bn=config.sync_bn)
    forward = speed_up(ddp, config, device)  # the hook for resnets.optimize(model, mode="train")
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    ema = build_ema(model, config)
    mixing = build_mixing(config, data.num_classes)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    train_loader, val_loader = build_loaders(config, data, device, micro_batch)
    steps_per_epoch = max(1, len(data.train) // config.batch_size)  # the same on any world size
    accum = config.accum_steps
    schedule = Schedule.from_config(config, steps_per_epoch)
    epochs = math.ceil(schedule.total_steps / steps_per_epoch)
    amp = autocast(device, config.precision)

    state = TrainState()
    if resume:
        state = restore(run_dir / "checkpoint", model, optimizer, scaler, ema, device)
    if world > 1:
        distributed.seed_rank(config.seed, state.step)
    if not resume and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", run_record(config, data, model, device, command, world))
    log = RunLog(
        run_dir, console=console and main, table_stream=table_stream, tensorboard=config.tensorboard and main
    )

    eval_model = ema.module if ema is not None else model
    guard = LossGuard(config.skip_nonfinite, run_dir / "checkpoint")
    for epoch in range(state.epoch, epochs):
        # --- one epoch of training -----------------------------------------------------------
        model.train()
        # loss total, correct (no sync per step), images; rank 0 carries a resumed epoch's share
        carried = state.epoch_sums if main else [0.0, 0.0, 0.0]
        sums = torch.tensor(carried[:2], dtype=torch.float64, device=device)
        count = int(carried[2])
        start, last_shown = time.perf_counter(), 0.0
        done = state.epoch_step
        steps = min(steps_per_epoch - done, schedule.total_steps - state.step)
        bar = log.bar(epoch + 1, epochs, steps)
        micro_batches = itertools.islice(train_loader.epoch(epoch, skip=done * accum), steps * accum)
        dropping = False
        for micro, (x, y) in enumerate(micro_batches):
            last_micro = micro % accum == accum - 1
            lr = schedule(state.step, state.warmup_done)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = mixing(x, y) if mixing is not None else (x, y)
            with distributed.no_sync(ddp, skip=not last_micro):
                with amp:
                    logits = forward(to_input(inputs, channels_last))
                    loss = faults.loss(criterion(logits, targets), state.step + 1)
                admitted = guard.admit(loss, state.step + 1, state.skipped_steps, world > 1)
                if admitted:
                    scaler.scale(loss / accum).backward()
                    sums += torch.stack(
                        [loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()]
                    )
                    count += len(y)
            dropping |= not admitted
            if not last_micro:
                continue
            if dropping:  # a skipped non-finite loss drops its whole accumulated step
                optimizer.zero_grad(set_to_none=True)
                dropping = False
                continue
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(model)
            state.step += 1
            state.epoch_step += 1
            if config.warmup_until_error is not None and not state.warmup_done:
                correct, seen = ranks.reduce_sums(torch.stack([sums[1], sums.new_tensor(count)])).tolist()
                state.warmup_done = 1 - correct / seen < config.warmup_until_error
            every = config.checkpoint_every_steps
            if every and state.step % every == 0 and state.epoch_step < steps_per_epoch:
                state.epoch_sums = ranks.reduce_sums(torch.cat([sums, sums.new_tensor([count])])).tolist()
                guard.check()  # a NaN since the last check stops here, naming its step, unsaved
                if main:
                    save(run_dir / "checkpoint", config, state, model, optimizer, scaler, ema, mid_epoch=True)
            faults.after_step(state.step)
            bar.update(1)
            if time.perf_counter() - last_shown > 0.5:
                last_shown = time.perf_counter()
                guard.check()
                bar.set_postfix_str(progress_text(sums, count, start, state, schedule, epoch_steps=bar.n))
        bar.close()
        guard.check()
        train_seconds = time.perf_counter() - start

        # --- evaluate, reduce, log, checkpoint ----------------------------------------------
        distributed.broadcast_buffers(eval_model)  # one model on every rank, the one rank 0 saves
        val = evaluate_model(eval_model, val_loader, data.num_classes, amp, channels_last)
        totals = ranks.reduce_sums(torch.cat([sums, sums.new_tensor([count, count - carried[2]])]))
        images, images_now = int(totals[2].item()), int(totals[3].item())  # the epoch's; this call's
        seconds = time.perf_counter() - start
        state.epoch, state.epoch_step, state.epoch_sums = epoch + 1, 0, [0.0, 0.0, 0.0]
        state.train_seconds += seconds
        state.step_seconds += train_seconds
        state.images_seen += images_now  # over step_seconds, which also counts this call only
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
            "skipped": len(train_loader.skipped) + len(val_loader.skipped),
            "skipped_files": sorted(set(train_loader.skipped) | set(val_loader.skipped)),
        }
        state.history.append(row)
        if main:
            log.epoch(row, state.history, epochs)
            if row["skipped"] and console:
                print(skipped_text(row["skipped_files"]), file=sys.stderr, flush=True)
            last = state.epoch == epochs
            by_steps = config.checkpoint_every_steps and state.step % config.checkpoint_every_steps == 0
            if (
                last
                or by_steps
                or state.epoch % config.checkpoint_every == 0
                or state.epoch == stop_after_epoch
            ):
                save(run_dir / "checkpoint", config, state, model, optimizer, scaler, ema)
        if stop_after_epoch is not None and state.epoch >= stop_after_epoch and state.epoch < epochs:
            log.close()
            return {"run_dir": str(run_dir), "epochs": state.epoch, "stopped": True}

    # --- the end: weights, curves, summary -----------------------------------------------------
    summary = finish(
        run_dir, config, data, eval_model, val_loader, state, epochs, device, amp, channels_last, world
    )
    log.close()
    return summary


# --- the pieces the loop is built from ---------------------------------------------------------


def evaluate_model(model: nn.Module, loader, num_classes: int, amp, channels_last: bool):

    return evaluate(
        model,
        loader.epoch(0),
        num_classes,
        autocast=amp,
        channels_last=channels_last,
        reduce=ranks.reduce_sums,  # each rank holds a disjoint share of the split
    )


def progress_text(
    sums: torch.Tensor, count: int, start: float, state: TrainState, schedule: Schedule, epoch_steps: int
) -> str:
    loss, correct = sums.tolist()
    elapsed = time.perf_counter() - start
    per_step = elapsed / max(epoch_steps, 1)
    eta = per_step * (schedule.total_steps - state.step)
    return (
        f"loss={loss / max(count, 1):.4f} acc={100 * correct / max(count, 1):.1f}% "
        f"img/s={count / max(elapsed, 1e-9):.0f} eta={format_duration(eta)}"
    )


def skipped_text(files: list[str]) -> str:
    shown = ", ".join(files[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
    return f"skipped {len(files)} unreadable image(s) this epoch: {shown}"


# --- run records, checkpoints and the end of a run ---------------------------------------------


def finish(
    run_dir, config, data, eval_model, val_loader, state, epochs, device, amp, channels_last, world_size
) -> dict[str, Any]:
    """Write model.safetensors, curves.png and summary.json; return the summary."""

    last = state.history[-1]
    summary: dict[str, Any] = {
        "model": config.model,
        "data": data.name,
        "run_dir": str(run_dir),
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
        "device": str(device),
        "world_size": world_size,
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
            device=device,
            workers=config.workers,
            crops=10,
            rank=ranks.rank(),
            world_size=world_size,
        )
        ten_crop = evaluate_model(eval_model, ten, data.num_classes, amp, channels_last)
        summary.update(
            val_top1_10crop=ten_crop.top1, val_top5_10crop=ten_crop.top5, val_loss_10crop=ten_crop.loss
        )
    if not ranks.is_main():
        return summary
    meta = WeightsMeta(
        model=config.model,
        spec=eval_model.spec.to_dict(),
        classes=data.classes,
        mean=list(data.mean),
        std=list(data.std),
        input_size=data.input_size,
        resize_size=data.resize_size,
        extra={
            "color": data.notes.get("color", "RGB"),
            "data": data.name,
            "val_top1": last["val_top1"],
            "ema": config.ema_decay is not None,
            "preprocess": "resize to input_size"
            if data.resize_size is None
            else "resize shorter side to resize_size, centre crop input_size",
        },
    )
    save_weights(eval_model, run_dir / "model.safetensors", meta)
    plot_curves(run_dir / "curves.png", state.history, title=f"{config.model} on {data.name}")
    write_json(run_dir / "summary.json", summary)
    return summary
