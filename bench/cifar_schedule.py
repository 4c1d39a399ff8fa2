"""The CIFAR target of docs/benchmarks.md: the paper's whole ResNet-56 schedule in <= 120 s on one
H100 (ResNet-20 in <= 45 s), and >= 3x faster per step than a plain eager PyTorch loop fed by a
CPU DataLoader on the same GPU.

    PYTHONPATH=src python bench/cifar_schedule.py --out results/cifar.json

The schedule is He et al. 2015, sec. 4.2: batch 128, SGD with momentum 0.9 and weight decay
1e-4, learning rate 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; augmentation:
4-pixel zero padding, random 32x32 crop, random horizontal flip. Synthetic CIFAR-shaped data
(50,000 uint8 images, 10 classes) stands in for CIFAR-10: the cost per step is the same.

Ours: the images live on the GPU, resnets.data.augment crops and flips each batch there with
batched ops, and each step is the one `resnets train` runs, built by its builder
(resnets.train.step.build_step) from a TrainConfig: resnets.optimize's forward (channels-last,
bf16, torch.compile), fused SGD with the learning rate in a device tensor, the loss guard, and
the whole step (forward, backward, update) as one CUDA graph replay. The baseline: the same
network in fp32, eager, fed by a torch DataLoader whose workers apply torchvision transforms per
sample. A third row, the eager loop fed from the GPU-resident data, separates the data path's
share from the model's.

The run is wall-clock: the time to the first captured step (compilation, warm-up, capture) is
reported apart from the steady state. If a run would overrun --budget-s it stops early and
reports the steady-state projection for the full schedule (marked "projected").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from resnets import create_model
from resnets.data.augment import random_crop_flip
from resnets.models.zoo import CIFAR10_MEAN, CIFAR10_STD
from resnets.train.config import TrainConfig
from resnets.train.step import GRAPH_WARMUP, build_step, set_lr

TARGET_S = {"resnet20": 45.0, "resnet56": 120.0}
TRAIN_IMAGES = 50_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_cifar(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    images = torch.randint(0, 256, (TRAIN_IMAGES, 3, 32, 32), dtype=torch.uint8, device=device, generator=g)
    labels = torch.randint(0, 10, (TRAIN_IMAGES,), device=device, generator=g)
    return images, labels


class GpuBatches:
    """Shuffled epochs of augmented, normalized batches, made on the GPU without a host sync."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int = 0) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.generator = torch.Generator(device=images.device).manual_seed(seed)
        self.per_epoch = len(images) // batch_size  # the last partial batch is dropped
        self.scale = (1 / (255 * torch.tensor(CIFAR10_STD, device=images.device))).view(1, 3, 1, 1)
        self.shift = (
            -torch.tensor(CIFAR10_MEAN, device=images.device)
            / torch.tensor(CIFAR10_STD, device=images.device)
        ).view(1, 3, 1, 1)
        self.order = torch.empty(0, dtype=torch.long, device=images.device)

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = iteration % self.per_epoch
        if k == 0:
            self.order = torch.randperm(len(self.images), device=self.images.device, generator=self.generator)
        idx = self.order[k * self.batch_size : (k + 1) * self.batch_size]
        x = random_crop_flip(self.images[idx], padding=4, generator=self.generator)
        return torch.addcmul(self.shift, x.float(), self.scale), self.labels[idx]


def paper_lr(iteration: int) -> float:
    """0.1, divided by 10 at 32k and at 48k iterations (He et al. 2015, sec. 4.2)."""
    return 0.1 * (0.1 ** ((iteration >= 32_000) + (iteration >= 48_000)))


def run_schedule(name: str, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    device = torch.device(args.device)
    images, labels = synthetic_cifar(device)
    data = GpuBatches(images, labels, args.batch_size)
    config = TrainConfig(  # He et al. 2015, sec. 4.2: SGD, momentum 0.9, weight decay 1e-4
        model=name,
        device=str(device),
        batch_size=args.batch_size,
        lr=paper_lr(0),
        precision=args.precision,
        compile=device.type == "cuda",
    )
    step = build_step(config, create_model(name), device, num_classes=10, in_memory=True)
    optimizer = step.optimizer
    warmup = GRAPH_WARMUP  # eager steps; the next call captures the graph (on CUDA)
    losses: dict[int, float] = {}
    sync(device)
    start = time.perf_counter()
    lr = paper_lr(0)
    it = 0
    steady_start = steady_from = None
    truncated = False
    while it < args.iterations:
        if paper_lr(it) != lr:
            lr = paper_lr(it)
            set_lr(optimizer, lr)
        x, y = data.batch(it)
        stats = step([(x, y)], it + 1).stats  # loss sum, correct, images: on the device
        it += 1
        if it == warmup + 1:
            sync(device)
            steady_start, steady_from = time.perf_counter(), it
            log(f"{name}: compiled, warmed up and captured in {steady_start - start:.1f} s")
        if it % args.log_every == 0 or it == args.iterations:
            losses[it] = (stats[0] / stats[2]).item()  # the only host syncs: one per log_every steps
            now = time.perf_counter()
            log(f"{name}: iteration {it:>6}, loss {losses[it]:.4f}, lr {lr:g}, {now - start:.1f} s")
            if steady_start is not None and it > steady_from:
                rate = (now - steady_start) / (it - steady_from)
                if now + rate * (args.iterations - it) > deadline:
                    truncated = True
                    log(f"{name}: stopping early to stay within the budget; projecting the full schedule")
                    break
    sync(device)
    end = time.perf_counter()
    assert steady_start is not None and steady_from is not None
    steady_ms = (end - steady_start) * 1000 / max(1, it - steady_from)
    warmup_s = steady_start - start
    full_steady_s = steady_ms * args.iterations / 1000
    result = {
        "model": name,
        "iterations_run": it,
        "iterations_schedule": args.iterations,
        "truncated": truncated,
        "warmup_s": warmup_s,
        "steady_ms_per_step": steady_ms,
        "wall_s": end - start if not truncated else None,
        "projected_wall_s": warmup_s + full_steady_s,
        "steady_wall_s_for_schedule": full_steady_s,
        "losses": losses,
        "target_s": TARGET_S.get(name),
        "config": step.describe(),
    }
    del step, optimizer, data, images, labels
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


class CpuAugmented(torch.utils.data.Dataset):
    """CIFAR-style dataset on the CPU, augmented per sample by torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        from torchvision.transforms import v2

        self.images, self.labels = images, labels
        self.transform = v2.Compose(
            [
                v2.RandomCrop(32, padding=4),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(CIFAR10_MEAN, CIFAR10_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(self.images[i]), self.labels[i]


def eager_steps(name: str, batches: Any, steps: int, warmup: int, device: torch.device) -> float:
    """A plain PyTorch loop (fp32, NCHW, no compile, default SGD): ms per step over `steps`
    steps after `warmup`, fetching included, timed as one block so the CPU may run ahead."""
    model = create_model(name).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    it = iter(batches)

    def step() -> None:
        x, y = next(it)
        # .contiguous(): plain NCHW, as a DataLoader delivers it (GPU-augmented batches are NHWC).
        x, y = x.to(device, non_blocking=True).contiguous(), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t) * 1000 / steps


def run_baselines(name: str, args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    out: dict[str, Any] = {"model": name}
    cpu_images, cpu_labels = synthetic_cifar(torch.device("cpu"))
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(
        CpuAugmented(cpu_images, cpu_labels),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=workers > 0,
    )

    def forever(dl: Any) -> Any:
        while True:
            yield from dl

    begin = time.perf_counter()
    out["eager_cpu_dataloader_ms_per_step"] = eager_steps(
        name, forever(loader), args.baseline_steps, 20, device
    )
    out["dataloader_workers"] = workers
    log(
        f"{name}: eager + CPU DataLoader ({workers} workers): {out['eager_cpu_dataloader_ms_per_step']:.2f} ms/step"
    )
    del loader
    images, labels = synthetic_cifar(device)
    data = GpuBatches(images, labels, args.batch_size)
    gpu_batches = (data.batch(i) for i in range(10**9))
    out["eager_gpu_data_ms_per_step"] = eager_steps(name, gpu_batches, args.baseline_steps, 20, device)
    log(f"{name}: eager + GPU-resident data: {out['eager_gpu_data_ms_per_step']:.2f} ms/step")
    out["wall_s"] = time.perf_counter() - begin
    del data, images, labels
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def write_json(path: str, data: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def markdown(data: dict[str, Any]) -> str:
    env = data["environment"]
    lines = [
        f"### CIFAR schedule: {data['settings']['iterations']:,} iterations, batch {data['settings']['batch_size']}, "
        f"{data['settings']['precision']}, {env['device_name']}",
        "",
        f"torch {env['torch']}, torchvision {env['torchvision']}, CUDA {env['cuda']}; {data['date']}",
        "",
        "| model | whole schedule (s) | target (s) | compile + warm-up (s) | steady ms/step | "
        "eager + CPU DataLoader ms/step | speedup per step | eager + GPU data ms/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in data["settings"]["models"]:
        ours = data["ours"].get(name, {})
        base = data["baselines"].get(name, {})
        if "error" in ours or not ours.get("steady_ms_per_step"):
            lines.append(
                f"| {name} | {'failed: ' + ours['error'] if 'error' in ours else 'not run'} | | | | | | |"
            )
            continue
        wall = ours.get("wall_s")
        wall_text = (
            f"{wall:.1f}" if wall is not None else f"{ours.get('projected_wall_s', 0):.1f} (projected)"
        )
        steady = ours.get("steady_ms_per_step")
        dl = base.get("eager_cpu_dataloader_ms_per_step")
        speedup = f"{dl / steady:.1f}x" if dl and steady else "-"
        lines.append(
            f"| {name} | {wall_text} | {ours.get('target_s') or '-'} | {ours.get('warmup_s', 0):.1f} | "
            f"{steady:.3f} | {f'{dl:.2f}' if dl else '-'} | {speedup} | "
            f"{base.get('eager_gpu_data_ms_per_step', 0):.2f} |"
        )
    lines += [
        "",
        "Whole schedule = compile + warm-up + every step, wall clock, synchronised; steady ms/step excludes "
        "the first 4 steps. Speedup per step = eager + CPU DataLoader / ours (target >= 3x).",
        f"Script wall time: {data['elapsed_s']:.0f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", default=os.environ.get("RESNETS_BENCH_OUT"), help="JSON path (default: $RESNETS_BENCH_OUT)"
    )
    p.add_argument("--models", default="resnet20,resnet56")
    p.add_argument("--iterations", type=int, default=64_000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--baseline-steps", type=int, default=200, help="timed steps of each eager baseline")
    p.add_argument("--workers", type=int, help="DataLoader workers for the baseline (default: min(8, cores))")
    p.add_argument("--log-every", type=int, default=2000)
    p.add_argument(
        "--budget-s", type=float, default=540.0, help="stop (and project) rather than run past this"
    )
    p.add_argument("--skip-baselines", action="store_true")
    p.add_argument("--device", default="cuda", help="cuda (the target); cpu only smoke-tests the script")
    args = p.parse_args(argv)
    if args.iterations <= 5:  # 3 eager warm-up steps and the capture: nothing steady to time
        print("cifar_schedule: --iterations must be above 5 to time steady steps", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("cifar_schedule: needs a CUDA GPU (--device cpu smoke-tests the script)", file=sys.stderr)
        return 2
    import torchvision

    torch.backends.cudnn.benchmark = True
    start = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    data: dict[str, Any] = {
        "suite": "cifar_schedule",
        "command": " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(),
        },
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "models": models},
        "baselines": {},
        "ours": {},
    }

    def save() -> None:
        data["elapsed_s"] = time.perf_counter() - start
        if args.out:
            write_json(args.out, data)

    if not args.skip_baselines:
        for name in models:
            try:
                data["baselines"][name] = run_baselines(name, args)
            except Exception as exc:  # a failing section is logged; the others still run
                log(f"{name} baselines FAILED: {exc!r}")
                data["baselines"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            save()
    for i, name in enumerate(models):
        # Leave the later models their share of what is left of the budget.
        left = args.budget_s - (time.perf_counter() - start)
        deadline = time.perf_counter() + left / (len(models) - i) * (1.0 if i == len(models) - 1 else 0.8)
        try:
            data["ours"][name] = run_schedule(name, args, deadline)
            r = data["ours"][name]
            log(
                f"{name}: {r['steady_ms_per_step']:.3f} ms/step steady; whole schedule "
                f"{r['wall_s'] if r['wall_s'] is not None else r['projected_wall_s']:.1f} s"
                + (" (projected)" if r["truncated"] else "")
            )
        except Exception as exc:
            import traceback

            traceback.print_exc()
            data["ours"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        save()
    for name in models:
        ours, base = data["ours"].get(name, {}), data["baselines"].get(name, {})
        if ours.get("steady_ms_per_step") and base.get("eager_cpu_dataloader_ms_per_step"):
            ours["speedup_vs_eager_cpu_dataloader"] = (
                base["eager_cpu_dataloader_ms_per_step"] / ours["steady_ms_per_step"]
            )
    save()
    print(markdown(data))
    if args.out:
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
            f.write(markdown(data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
