"""The GPU table of docs/benchmarks.md in one command: ResNet-50, 224 px, batch 256, bf16, SGD, one GPU.

    PYTHONPATH=src python bench/gpu_suite.py --out results/gpu_suite.json

Measures, in one process with one loop (resnets.bench): training and inference img/s of
torchvision eager, torchvision + torch.compile and ours; our fraction of the paper-FLOP
ceiling; peak training memory, ours vs torchvision, and the batch that activation
checkpointing fits in torchvision's memory; and what each optimization buys (an ablation from
plain eager fp32 to ours). "Ours" in training is the step `resnets train` runs, built by its own
builder (resnets.train.step.build_step) from a TrainConfig; the first ablation rows run the plain
PyTorch step on our model. Writes JSON (--out, or $RESNETS_BENCH_OUT) after every row, so a run
cut short keeps what it measured, and prints a markdown table at the end.

Rows run most-important first and each is independent: a failing row logs its traceback and
the suite goes on. Rows that would start after --budget-s are skipped (the default keeps the
whole suite, compilation included, under 9 minutes on one H100).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from resnets import create_model, optimize, summary
from resnets.bench.runner import (
    BenchSettings,
    build_torchvision,
    eager_train_step,
    measure,
    paper_sgd,
    synthetic_batch,
)
from resnets.train.config import TrainConfig
from resnets.train.step import GRAPH_WARMUP, build_step

# Dense bf16 tensor-core peaks from NVIDIA's data sheets (no sparsity), TFLOP/s.
PEAK_BF16_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.4,  # SXM5 (reported as "NVIDIA H100 80GB HBM3")
    "H200": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
}

# Rough seconds a row costs on an H100 (most of it compilation): the budget check uses them.
COMPILE_COST_S = 100.0
EAGER_COST_S = 15.0


@dataclass
class Row:
    key: str
    label: str
    mode: str
    tables: list[str]
    batch: int
    img_s: float | None = None
    ms_step: float | None = None
    peak_mem_gb: float | None = None
    first_step_s: float | None = None
    wall_s: float | None = None
    error: str = ""
    note: str = ""
    config: dict[str, Any] = field(default_factory=dict)


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.start = time.perf_counter()
        self.rows: dict[str, Row] = {}
        self.shared: dict[str, Any] = {}
        self.data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.num_classes = create_model(args.model, device="meta").spec.num_classes
        self.env = environment(self.device)
        self._ceiling = ceiling(args.model, args.input_size, self.env["device_name"], args.peak_tflops)

    # --- running rows ----------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The synthetic batch of size n, the only one held (so no row's peak counts another's)."""
        if n not in self.data:
            self.data.clear()
            self.data[n] = synthetic_batch(n, self.args.input_size, self.num_classes, self.device)
        return self.data[n]

    def settings(self, mode: str, batch: int) -> BenchSettings:
        a = self.args
        return BenchSettings(
            model=a.model,
            mode=mode,
            device=a.device,
            batch_size=batch,
            input_size=a.input_size,
            precision=a.precision,
            steps=a.steps,
            warmup=max(a.warmup, GRAPH_WARMUP + 1),
            repeats=a.repeats,
        )

    def run(
        self,
        key: str,
        label: str,
        mode: str,
        tables: list[str],
        build: Callable[[torch.Tensor, torch.Tensor], Callable[[], Any]],
        *,
        batch: int | None = None,
        compiles: bool = False,
        reset: bool = True,
    ) -> Row:
        """Measure one row. `reset` drops dynamo's caches first (compiled graphs and frozen weights
        of earlier rows would otherwise stay in memory); rows that reuse a compiled model keep them."""
        batch = batch or self.args.batch_size
        row = Row(key, label, mode, tables, batch)
        self.rows[key] = row
        cost = COMPILE_COST_S if compiles else EAGER_COST_S
        if self.elapsed() + cost > self.args.budget_s:
            row.error = (
                f"skipped: would start at {self.elapsed():.0f} s of a {self.args.budget_s:.0f} s budget"
            )
            log(f"{label}: {row.error}")
            self.write()
            return row
        if reset:
            torch._dynamo.reset()
        x, y = self.batch(batch)
        settings = self.settings(mode, batch)
        begin = time.perf_counter()
        log(f"{label} ({mode}, batch {batch}) ...")
        result = measure(label, lambda: build(x, y), settings, self.device, catch=True, log_errors=True)
        row.wall_s = time.perf_counter() - begin
        row.img_s, row.ms_step, row.first_step_s, row.error = (
            result.img_s,
            result.ms_step,
            result.first_step_s,
            result.error,
        )
        row.config = self.shared.pop("config", {})
        if result.peak_mem_mb is not None:
            row.peak_mem_gb = result.peak_mem_mb / 1024
        if row.error:
            log(f"{label}: FAILED {row.error}")
        else:
            log(
                f"{label}: {row.img_s:,.0f} img/s, {row.ms_step:.2f} ms/step, peak {row.peak_mem_gb or 0:.2f} GB, "
                f"first step {row.first_step_s:.1f} s, row took {row.wall_s:.0f} s"
            )
        self.write()
        return row

    # --- builders ----------------------------------------------------------------------------

    def ours_train(
        self,
        *,
        compile: bool,
        channels_last: bool = True,
        precision: str | None = None,
        graph: bool = False,
        checkpoint: bool = False,
        compile_mode: str | None = None,
        share: str = "",
    ) -> Callable[[torch.Tensor, torch.Tensor], Callable[[], Any]]:
        """The step `resnets train` runs, built by its builder from a TrainConfig with these options
        (`graph`: capture it as one CUDA graph wherever train would); `share` reuses (or keeps) the
        compiled forward under that name, so the CUDA-graph row costs no compile."""
        precision = precision or self.args.precision

        def build(x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
            if not channels_last:
                x = x.contiguous()  # an NCHW input, or the convs would pick channels-last anyway
            config = TrainConfig(
                model=self.args.model,
                device=str(self.device),
                batch_size=len(x),
                lr=0.1,
                precision=precision,
                compile=compile,
                compile_mode=compile_mode if compile else None,
                channels_last=channels_last,
                checkpoint_activations=checkpoint,
                cuda_graph=None if graph else False,
            )
            forward = self.shared.get(share) if share else None
            model = forward.model if forward is not None else create_model(self.args.model)
            step = build_step(
                config, model, self.device, num_classes=self.num_classes, in_memory=True, forward=forward
            )
            if share:
                self.shared[share] = step.forward
            self.shared["config"] = step.describe()
            batch, number = [(x, y)], itertools.count(1)
            return lambda: step(batch, next(number))

        return build

    def plain_train(
        self, *, channels_last: bool = True, precision: str | None = None
    ) -> Callable[[torch.Tensor, torch.Tensor], Callable[[], Any]]:
        """The plain PyTorch step (the peers' step: foreach SGD, no guard) on our eager model."""
        precision = precision or self.args.precision

        def build(x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
            if not channels_last:
                x = x.contiguous()
            fast = optimize(
                create_model(self.args.model),
                mode="train",
                device=self.device,
                precision=precision,
                compile=False,
                channels_last=channels_last,
            )
            step = eager_train_step(fast, paper_sgd(fast, 0.1), precision, self.device)
            self.shared["config"] = {**fast.config.to_dict(), "optimizer": "SGD(foreach)"}
            return lambda: step(x, y)

        return build

    def ours_infer(
        self,
        *,
        compile: bool,
        channels_last: bool = True,
        precision: str | None = None,
        fold_bn: bool = True,
        compile_mode: str | None = None,
    ) -> Callable[[torch.Tensor, torch.Tensor], Callable[[], Any]]:
        precision = precision or self.args.precision

        def build(x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
            fast = optimize(
                create_model(self.args.model),
                mode="infer",
                device=self.device,
                precision=precision,
                compile=compile,
                compile_mode=compile_mode,
                channels_last=channels_last,
                fold_bn=fold_bn,
            )
            self.shared["config"] = fast.config.to_dict()
            xin = x if channels_last else x.contiguous()
            return lambda: fast(xin)

        return build

    def torchvision(self, mode: str, compile_mode: str | None = None) -> Callable[..., Callable[[], Any]]:
        def build(x: torch.Tensor, y: torch.Tensor) -> Callable[[], Any]:
            self.shared["config"] = {
                "channels_last": True,
                "compile_mode": compile_mode,
                "optimizer": "SGD(foreach)",
            }
            return build_torchvision(self.settings(mode, x.shape[0]), x, y, compile_mode)

        return build

    # --- output ----------------------------------------------------------------------------

    def ceiling(self) -> dict[str, Any]:
        return self._ceiling

    def to_dict(self) -> dict[str, Any]:
        a = self.args
        return {
            "suite": "gpu_suite",
            "command": " ".join(sys.argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": self.env,
            "settings": {k: v for k, v in vars(a).items() if k != "out"},
            "elapsed_s": self.elapsed(),
            "ceiling": self.ceiling(),
            "rows": [asdict(r) for r in self.rows.values()],
            "summary": self.summary(),
        }

    def summary(self) -> dict[str, Any]:
        r = self.rows
        out: dict[str, Any] = {}
        ceiling = self.ceiling()
        for mode in ("train", "infer"):
            ours, eager, comp = (r.get(f"{k}_{mode}") for k in ("ours", "tv_eager", "tv_compile"))
            if ours and ours.img_s:
                out[f"{mode}_ours_img_s"] = ours.img_s
                if comp and comp.img_s:
                    out[f"{mode}_ratio_vs_torchvision_compile"] = ours.img_s / comp.img_s
                if eager and eager.img_s:
                    out[f"{mode}_ratio_vs_torchvision"] = ours.img_s / eager.img_s
                if ceiling.get(f"{mode}_img_s"):
                    out[f"{mode}_fraction_of_ceiling"] = ours.img_s / ceiling[f"{mode}_img_s"]
        ours = r.get("ours_train")
        for peer in ("tv_eager", "tv_compile"):
            theirs = r.get(f"{peer}_train")
            if ours and theirs and ours.peak_mem_gb and theirs.peak_mem_gb:
                out[f"train_peak_mem_ours_over_{peer}"] = ours.peak_mem_gb / theirs.peak_mem_gb
        eager = r.get("tv_eager_train")
        for key in ("ours_ckpt_2x", "ours_eager_ckpt_2x"):
            ckpt = r.get(key)
            if ckpt and eager and ckpt.peak_mem_gb and eager.peak_mem_gb:
                out[f"{key}_batch"] = ckpt.batch
                out[f"{key}_peak_over_tv_eager_at_half_batch"] = ckpt.peak_mem_gb / eager.peak_mem_gb
                out[f"{key}_fits_2x_batch"] = ckpt.peak_mem_gb <= eager.peak_mem_gb
        return out

    def write(self) -> None:
        path = self.args.out
        if not path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def markdown(self) -> str:
        d = self.to_dict()
        env, s, ceiling, summ = d["environment"], self.args, d["ceiling"], d["summary"]
        r = self.rows
        lines = [
            f"### {s.model}, {s.input_size} px, batch {s.batch_size}, {s.precision}, SGD, {env['device_name']}",
            "",
            f"torch {env['torch']}, torchvision {env['torchvision']}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}; "
            f"{s.steps} timed steps after {max(s.warmup, GRAPH_WARMUP + 1)} warm-up, median of {s.repeats} chunks; {d['date']}",
            "",
            "| | torchvision eager | torchvision + torch.compile | ours | ours / tv+compile | fraction of ceiling |",
            "|---|---|---|---|---|---|",
        ]
        for mode, title in (("train", "training img/s"), ("infer", "inference img/s")):
            cells = [_img(r.get(f"{k}_{mode}")) for k in ("tv_eager", "tv_compile", "ours")]
            ratio = summ.get(f"{mode}_ratio_vs_torchvision_compile")
            frac = summ.get(f"{mode}_fraction_of_ceiling")
            lines.append(
                f"| {title} | {' | '.join(cells)} | {f'{ratio:.2f}x' if ratio else '-'} | {f'{frac:.1%}' if frac else '-'} |"
            )
        mem = [_gb(r.get(k)) for k in ("tv_eager_train", "tv_compile_train", "ours_train")]
        lines.append(f"| peak training memory | {' | '.join(mem)} | | |")
        lines.append("")
        if ceiling.get("train_img_s"):
            lines.append(
                f"Ceiling: {ceiling['peak_bf16_tflops']:.0f} TFLOP/s dense bf16 / {ceiling['flops_per_image_train'] / 1e9:.1f} "
                f"GFLOP per training image = {ceiling['train_img_s']:,.0f} img/s training, "
                f"{ceiling['infer_img_s']:,.0f} img/s inference ({ceiling['explain']})."
            )
        for key in ("ours_ckpt_2x", "ours_eager_ckpt_2x"):
            ckpt = r.get(key)
            if ckpt is None:
                continue
            fits = summ.get(f"{key}_fits_2x_batch")
            verdict = (
                "fits 2x the batch in the same memory"
                if fits
                else f"does not fit ({ckpt.error})"
                if ckpt.error
                else "does not fit"
            )
            lines.append(
                f"{ckpt.label}: batch {ckpt.batch} peaks at {_gb(ckpt)} ({_img(ckpt)} img/s) vs torchvision eager's "
                f"{_gb(r.get('tv_eager_train'))} at batch {s.batch_size}: {verdict}."
            )
        for mode, title in (("train", "Training"), ("infer", "Inference")):
            lines += ["", f"{title}: what each optimization buys (our model, batch {s.batch_size})", ""]
            lines += [
                "| step | img/s | vs previous | peak memory | first step (s) |",
                "|---|---|---|---|---|",
            ]
            previous = None
            for row in r.values():
                if row.mode != mode or "ablation" not in row.tables:
                    continue
                gain = f"{row.img_s / previous:.2f}x" if row.img_s and previous else "-"
                first = f"{row.first_step_s:.1f}" if row.first_step_s is not None else "-"
                err = f" ({row.error})" if row.error else ""
                lines.append(f"| {row.label}{err} | {_img(row)} | {gain} | {_gb(row)} | {first} |")
                previous = row.img_s or previous
        lines += ["", f"Suite wall time: {d['elapsed_s']:.0f} s."]
        return "\n".join(lines)


def ceiling(model: str, input_size: int, device_name: str, peak_tflops: float | None) -> dict[str, Any]:
    """Images per second if every FLOP of the paper's count ran at the GPU's dense bf16 peak."""
    macs = summary(model, input_size=input_size).macs
    peak = peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)
    out: dict[str, Any] = {
        "macs_per_image_forward": macs,
        "flops_per_image_forward": 2 * macs,
        "flops_per_image_train": 6 * macs,
        "peak_bf16_tflops": peak,
        "explain": (
            f"forward = 2 FLOPs per multiply-add x {macs / 1e9:.2f} GMACs = {2 * macs / 1e9:.2f} GFLOP per image; "
            "backward ~ 2x forward (gradients for inputs and for weights), so training ~ 3x forward = "
            f"{6 * macs / 1e9:.1f} GFLOP per image; ceiling = peak FLOP/s / FLOPs per image"
        ),
    }
    if peak:
        out["train_img_s"] = peak * 1e12 / (6 * macs)
        out["infer_img_s"] = peak * 1e12 / (2 * macs)
    return out


def _img(row: Row | None) -> str:
    if row is None:
        return "-"
    if row.error:
        return "failed" if not row.error.startswith("skipped") else "skipped"
    return f"{row.img_s:,.0f}" if row.img_s else "-"


def _gb(row: Row | None) -> str:
    return f"{row.peak_mem_gb:.1f} GB" if row and row.peak_mem_gb is not None else "-"


def environment(device: torch.device) -> dict[str, Any]:
    import torchvision

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["memory_gb"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    else:
        env["device_name"] = "cpu"
    try:
        env["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", default=os.environ.get("RESNETS_BENCH_OUT"), help="JSON path (default: $RESNETS_BENCH_OUT)"
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=500.0, help="start no row that would end after this")
    p.add_argument(
        "--sections",
        default="main,memory,ablation",
        help="comma-separated: main, memory, ablation, autotune (max-autotune rows: minutes of compiling)",
    )
    p.add_argument(
        "--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the built-in table"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device here (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True  # for every row alike
    sections = set(args.sections.split(","))
    suite = Suite(args)
    log(f"suite on {suite.env['device_name']}: {args.model} batch {args.batch_size} {args.precision}")
    main_rows, ablation = "main" in sections, "ablation" in sections
    both = ["main", "ablation"]
    run = suite.run
    # Most important first: the main table, then memory, then the cheap eager ablation rows,
    # then what costs another compile.
    if main_rows:
        run("tv_eager_train", "torchvision eager", "train", ["main"], suite.torchvision("train"))
        run(
            "tv_compile_train",
            "torchvision + torch.compile",
            "train",
            ["main"],
            suite.torchvision("train", "default"),
            compiles=True,
        )
    if main_rows or ablation:
        run(
            "ours_compile_train",
            "+ torch.compile",
            "train",
            ["ablation"],
            suite.ours_train(compile=True, share="compiled"),
            compiles=True,
        )
        # Same compiled model and optimizer as the row above: capturing costs no compile.
        run(
            "ours_train",
            "+ CUDA graph of the whole step (ours)",
            "train",
            both,
            suite.ours_train(compile=True, graph=True, share="compiled"),
            compiles="compiled" not in suite.shared,
            reset=False,
        )
        suite.shared.pop("compiled", None)
    if main_rows:
        run("tv_eager_infer", "torchvision eager", "infer", ["main"], suite.torchvision("infer"))
        run(
            "tv_compile_infer",
            "torchvision + torch.compile",
            "infer",
            ["main"],
            suite.torchvision("infer", "default"),
            compiles=True,
        )
    if main_rows or ablation:
        run(
            "ours_infer",
            "+ CUDA graphs (ours)",
            "infer",
            both,
            suite.ours_infer(compile=True, compile_mode="reduce-overhead"),
            compiles=True,
        )
    if "memory" in sections:
        run(
            "ours_eager_ckpt_2x",
            "ours eager + activation checkpointing, 2x batch",
            "train",
            ["memory"],
            suite.ours_train(compile=False, checkpoint=True),
            batch=2 * args.batch_size,
        )
    if ablation:
        fp32_nchw = dict(compile=False, channels_last=False, precision="fp32")
        fp32 = dict(compile=False, precision="fp32")
        run(
            "abl_train_0",
            "eager, fp32, NCHW, plain step, SGD (foreach)",
            "train",
            ["ablation"],
            suite.plain_train(channels_last=False, precision="fp32"),
        )
        run("abl_train_1", "+ channels_last", "train", ["ablation"], suite.plain_train(precision="fp32"))
        run("abl_train_2", f"+ {args.precision} autocast", "train", ["ablation"], suite.plain_train())
        run(
            "abl_train_3",
            "+ train's step (fused SGD, loss guard, device-side statistics)",
            "train",
            ["ablation"],
            suite.ours_train(compile=False),
        )
        run(
            "abl_infer_0",
            "eager, fp32, NCHW",
            "infer",
            ["ablation"],
            suite.ours_infer(fold_bn=False, **fp32_nchw),
        )
        run("abl_infer_1", "+ channels_last", "infer", ["ablation"], suite.ours_infer(fold_bn=False, **fp32))
        run(
            "abl_infer_2",
            f"+ {args.precision} autocast",
            "infer",
            ["ablation"],
            suite.ours_infer(compile=False, fold_bn=False),
        )
        run(
            "abl_infer_3",
            "+ BN folded into the convs",
            "infer",
            ["ablation"],
            suite.ours_infer(compile=False),
        )
    if "memory" in sections:
        run(
            "ours_ckpt_2x",
            "ours compiled + activation checkpointing (not captured as a graph), 2x batch",
            "train",
            ["memory"],
            suite.ours_train(compile=True, checkpoint=True),
            batch=2 * args.batch_size,
            compiles=True,
        )
    if ablation:
        run(
            "ours_compile_infer",
            "+ torch.compile (weights frozen)",
            "infer",
            ["ablation"],
            suite.ours_infer(compile=True, compile_mode="default"),
            compiles=True,
        )
        _order_ablation(suite)
    if "autotune" in sections:
        run(
            "autotune_train",
            "+ max-autotune (instead of default compile)",
            "train",
            ["ablation"],
            suite.ours_train(compile=True, graph=True, compile_mode="max-autotune-no-cudagraphs"),
            compiles=True,
        )
        run(
            "autotune_infer",
            "+ max-autotune (instead of reduce-overhead)",
            "infer",
            ["ablation"],
            suite.ours_infer(compile=True, compile_mode="max-autotune"),
            compiles=True,
        )
    suite.write()
    print(suite.markdown())
    if args.out:
        with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
            f.write(suite.markdown() + "\n")
    return 0


def _order_ablation(suite: Suite) -> None:
    """Print the ablation from plain eager up to ours, whatever order the rows ran in."""
    order = [
        "abl_train_0",
        "abl_train_1",
        "abl_train_2",
        "abl_train_3",
        "ours_compile_train",
        "ours_train",
        "abl_infer_0",
        "abl_infer_1",
        "abl_infer_2",
        "abl_infer_3",
        "ours_compile_infer",
        "ours_infer",
    ]
    rows = suite.rows
    suite.rows = {k: rows[k] for k in order if k in rows} | {k: v for k, v in rows.items() if k not in order}


if __name__ == "__main__":
    sys.exit(main())
