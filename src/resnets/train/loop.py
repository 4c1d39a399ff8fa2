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
restarts in distributed.py, the speed-ups in device.speed_up, the schedule in schedule.py, the
files in checkpoint.py and logging.py.
"""

from __future__ import annotations

import base64
import itertools
import math
import platform
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from resnets.atomic import write_json
from resnets.errors import ResNetsError
from resnets.train import distributed, faults, ranks
from resnets.train.checkpoint import (
    LATEST,
    join_tensors,
    load_checkpoint,
    prefixed,
    save_checkpoint,
    split_tensors,
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
from resnets.train.logging import RunLog, check_tensorboard, format_duration, plot_curves
from resnets.train.schedule import Schedule


@dataclass
class TrainState:
    """Progress that is not a tensor: saved in the checkpoint's JSON."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    epoch_step: int = 0  # of which in the epoch under way (a mid-epoch checkpoint)
    epoch_sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # its loss, correct, images
    warmup_done: bool = False
    train_seconds: float = 0.0  # wall time of the epochs, evaluation included
    step_seconds: float = 0.0  # of which training steps
    images_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)  # non-finite losses under --skip-nonfinite


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


def load_training_data(config: TrainConfig):
    from resnets.data import load_data
    from resnets.models.create import resolve_spec
    from resnets.models.zoo import default_input_size

    return load_data(
        config.data,
        input_size=config.input_size,
        val_split=config.val_split,
        split_seed=config.split_seed,
        data_dir=config.data_dir,
        download=config.download,
        synthetic_count=config.synthetic_count,
        synthetic_classes=config.synthetic_classes,
        default_size=default_input_size(resolve_spec(config.model)),
    )


def build_model(config: TrainConfig, data) -> nn.Module:
    from resnets.models.create import create_model

    model = create_model(
        config.model, num_classes=data.num_classes, in_channels=data.in_channels, **config.model_overrides()
    )
    if config.weights:  # fine-tuning: start from these weights (a resumed run then restores its own)
        from resnets.weights import load_weights

        load_weights(model, config.weights, reset_head=config.reset_head)
    return model


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW; weight decay optionally off for BN and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if config.decay_norm_and_bias or p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def build_ema(model: nn.Module, config: TrainConfig):
    """An exponential moving average of weights and BN buffers, updated every step.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) over the first n updates (as in
    TensorFlow's and timm's EMA), so early averages are not dominated by the random init.
    """
    if config.ema_decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel

    target = config.ema_decay

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        decay = min(target, (1 + n) / (10 + n))
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(averaged, current, 1.0 - decay)
        else:  # BN's num_batches_tracked: a count, not something to average
            torch._foreach_copy_(averaged, current)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def build_mixing(config: TrainConfig, num_classes: int):
    """torchvision's MixUp and/or CutMix on whole batches (one of the two per batch when both)."""
    from torchvision.transforms import v2

    mixes = []
    if config.mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=config.mixup_alpha, num_classes=num_classes))
    if config.cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=config.cutmix_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def split_batch(config: TrainConfig, world: int, train_images: int) -> int:
    """The per-process micro-batch: the global `batch_size` over processes and accumulation steps."""
    parts = world * config.accum_steps
    if config.batch_size % parts:
        raise ResNetsError(
            f"--batch-size {config.batch_size} is the global batch; it must divide evenly over "
            f"{world} process(es) x {config.accum_steps} accumulation step(s)"
        )
    if parts > 1 and train_images < config.batch_size:
        raise ResNetsError(
            f"--batch-size {config.batch_size} exceeds the {train_images} training images; "
            "lower it to train with several processes or accumulation steps"
        )
    return config.batch_size // parts


def build_loaders(config: TrainConfig, data, device: torch.device, micro_batch: int):
    from resnets.data import make_loader

    augment = config.augment
    if augment == "auto":
        augment = "pad-crop" if data.train.in_memory else "resized-crop"
    common = dict(
        seed=config.seed,
        device=device,
        workers=config.workers,
        rank=ranks.rank(),
        world_size=ranks.world_size(),
    )
    train_loader = make_loader(
        data,
        "train",
        batch_size=micro_batch,
        augment=augment,
        pad=config.pad,
        flip=config.flip,
        **common,
    )
    val_loader = make_loader(data, "val", batch_size=micro_batch * config.accum_steps, **common)
    return train_loader, val_loader


def evaluate_model(model: nn.Module, loader, num_classes: int, amp, channels_last: bool):
    from resnets.evaluate import evaluate

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


def run_record(
    config: TrainConfig, data, model: nn.Module, device: torch.device, command, world_size: int
) -> dict[str, Any]:
    """config.json: the resolved config plus what is needed to trust and repeat the run."""
    import numpy
    import torchvision

    from resnets import __version__

    return {
        "config": config.to_dict(),
        "seed": config.seed,
        "command": command if command is not None else sys.argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "world_size": world_size,
        "data": {
            "name": data.name,
            "classes": data.classes,
            "train_images": len(data.train),
            "val_images": len(data.val),
            "input_size": data.input_size,
            "in_channels": data.in_channels,
            "mean": list(data.mean),
            "std": list(data.std),
        },
        "model": {
            "name": config.model,
            "spec": model.spec.to_dict(),
            "params": sum(p.numel() for p in model.parameters()),
        },
        "versions": {
            "resnets": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
    }


def save(folder: Path, config, state: TrainState, model, optimizer, scaler, ema, mid_epoch=False) -> None:
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    optim_state = split_tensors(optimizer.state_dict(), "optimizer", tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    json_state = {
        "progress": asdict(state),
        "optimizer": optim_state,
        "scaler": scaler.state_dict(),
        "rng_python": base64.b64encode(repr(random.getstate()).encode()).decode(),
        "config": config.to_dict(),
    }
    save_checkpoint(
        folder,
        state.epoch,
        tensors,
        json_state,
        keep_last=config.keep_last,
        mid_epoch_step=state.step if mid_epoch else None,
    )


def restore(folder: Path, model, optimizer, scaler, ema, device: torch.device) -> TrainState:
    import ast

    if not (folder / LATEST).exists():  # killed before its first checkpoint: start over
        return TrainState()
    tensors, saved = load_checkpoint(folder)
    model.load_state_dict(prefixed(tensors, "model"))
    if ema is not None:
        ema.load_state_dict(prefixed(tensors, "ema"))
    optimizer.load_state_dict(join_tensors(saved["optimizer"], tensors))
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state_all(list(tensors["rng.cuda"]))
    random.setstate(ast.literal_eval(base64.b64decode(saved["rng_python"]).decode()))
    return TrainState(**saved["progress"])


def finish(
    run_dir, config, data, eval_model, val_loader, state, epochs, device, amp, channels_last, world_size
) -> dict[str, Any]:
    """Write model.safetensors, curves.png and summary.json; return the summary."""
    from resnets.weights import WeightsMeta, save_weights

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
        from resnets.data import make_loader

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


def default_run_dir(config: TrainConfig, root: str | Path = "runs", run_id: str | None = None) -> Path:
    """runs/<model>-<data>-<UTC time>, with a numeric suffix if that exists already.

    With a `run_id` (torchrun's rendezvous id), runs/<model>-<data>-<run_id>: the same path on
    every rank and after every restart of the group.
    """
    data = Path(config.data).name if ("/" in config.data or "\\" in config.data) else config.data
    model = config.model if config.model.replace("_", "").isalnum() else "custom"
    if run_id is not None:
        if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", run_id):
            run_id = run_id[:8]  # torchrun's own uuid4: the first 8 digits are unique enough
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
        return Path(root) / f"{model}-{data}-{safe}"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{model}-{data}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def check_fresh_run_dir(run_dir: Path) -> None:
    if (run_dir / "checkpoint").exists() or (run_dir / "config.json").exists():
        raise ResNetsError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
