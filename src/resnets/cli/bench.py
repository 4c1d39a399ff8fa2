"""`resnets bench`: our fast path against torchvision (and onnxruntime) in the same loop; the
progress bars and the table are printed here, the measuring is resnets.bench's."""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from resnets.bench import runner as bench
from resnets.cli.common import print_json
from resnets.runtime.device import PRECISIONS
from resnets.runtime.optimize import COMPILE_MODES


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time our fast path against torchvision (and onnxruntime) in one process",
        description=(
            "Time training or inference steps of our fast path (resnets.optimize: channels-last, "
            "autocast, torch.compile, CUDA graphs, fused SGD, BN folding) and, in the same process "
            "with the same loop, batch, precision, memory format and synthetic data already on the "
            "device, the peers you name. Training times the very step 'resnets train' runs (built "
            "from the same settings by the same code); the peers run the plain PyTorch step. "
            "Warm-up steps (compilation, autotuning, graph capture) are not timed; the result is "
            "the median of several timed chunks. Prints img/s, ms per step, peak memory and our "
            "ratio to each peer."
        ),
        epilog=(
            "Examples: 'resnets bench --device cuda --mode train --compare torchvision,torchvision-compile' "
            "(ResNet-50 at 224 px, batch 256, bf16: the GPU defaults); "
            "'resnets bench --device cpu --mode infer --compare torchvision,onnxruntime,onnxruntime-int8' "
            "(batch 1, fp32; the INT8 row is our model as 'resnets export --int8' writes it, run by "
            "onnxruntime, calibrated on random inputs since only its speed counts here). "
            "Models torchvision does not have (e.g. resnet20) skip the torchvision peers."
        ),
    )
    p.add_argument("--model", default="resnet50", help="model name or spec (default: resnet50)")
    p.add_argument(
        "--mode", choices=["train", "infer"], default="train", help="time training steps or forward passes"
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, help="default: 256 on CUDA; on CPU 1 (infer) or 8 (train)")
    p.add_argument("--input-size", type=int, help="square input side in pixels (default: the model's own)")
    p.add_argument("--precision", choices=list(PRECISIONS), help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument(
        "--compare",
        default="torchvision",
        help="comma-separated peers: torchvision, torchvision-compile, onnxruntime, onnxruntime-int8 "
        "(the last two: CPU inference); '' for none",
    )
    p.add_argument("--steps", type=int, default=30, help="timed steps (default: 30)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks; the median is reported (default: 5)")
    p.add_argument(
        "--compile-mode",
        choices=list(COMPILE_MODES),
        help="how our model is compiled: a torch.compile mode, or onednn-graph (CPU fp32 inference) "
        "(default: optimize's choice per device and mode)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile our model (default: on for CUDA and for CPU inference; compile time is reported apart)",
    )
    p.add_argument(
        "--no-cuda-graph", action="store_true", help="do not capture our training step as a CUDA graph"
    )
    p.add_argument(
        "--checkpoint-activations",
        action="store_true",
        help="recompute each block's activations in backward: about half the memory or less, ~1/3 more compute",
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON (keys ours_img_s, ratio_vs_<peer>)")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = bench.default_settings(
        model=args.model,
        mode=args.mode,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        input_size=args.input_size,
        compare=peer_names(args.compare),
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        compile=args.compile,
        compile_mode=args.compile_mode,
        cuda_graph=not args.no_cuda_graph,
        checkpoint_activations=args.checkpoint_activations,
    )
    bars: list[tqdm] = []

    def on_step(peer: str, resolved: bench.BenchSettings):
        if bars:
            bars[-1].close()
        total = steps_total(resolved)
        # disable=None: a bar only on a terminal, never in a log file or a pipe
        bars.append(tqdm(total=total, desc=peer, unit="step", file=sys.stderr, leave=False, disable=None))
        return bars[-1].update

    try:
        report = bench.run_bench(settings, on_step=on_step)
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    return 0


def peer_names(text: str) -> tuple[str, ...]:
    """'torchvision, onnxruntime' -> ('torchvision', 'onnxruntime'); '' -> ()."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


def steps_total(settings: bench.BenchSettings) -> int:
    """Steps one peer runs, warm-up included: the length of its progress bar."""
    repeats, per_chunk = bench.chunking(settings.steps, settings.repeats)
    return settings.warmup + repeats * per_chunk


def format_report(report: bench.BenchReport) -> str:
    """The report as a table: img/s, ms per step, peak MB, warm-up s and our ratio per peer."""
    s = report.settings
    env = report.environment
    lines = [
        f"{s.model} {s.mode}, {env['device_name']}, batch {s.batch_size}, {s.input_size} px, {s.precision}, "
        f"median of {s.repeats} chunks over {s.steps} steps after {s.warmup} warm-up",
        f"torch {env['torch']}, torchvision {env['torchvision']}",
        "",
        f"{'':22} {'img/s':>10} {'ms/step':>10} {'peak MB':>10} {'warm-up s':>10} {'ours vs':>8}",
    ]
    ratios = report.ratios()
    for r in report.results:
        if r.error:
            lines.append(f"{r.name:22} failed: {r.error}")
            continue
        ratio = f"{ratios[r.name]:.2f}x" if r.name in ratios else ""
        lines.append(
            f"{r.name:22} {_num(r.img_s, 10, 1)} {_num(r.ms_step, 10, 2)} {_num(r.peak_mem_mb, 10, 0)} "
            f"{_num(r.first_step_s, 10, 1)} {ratio:>8}"
        )
    kinds = sorted({r.mem_kind for r in report.results if r.mem_kind})
    lines.append("")
    lines.append(f"peak memory: {', '.join(bench.MEMORY_KINDS[k] for k in kinds)}")
    lines.append("warm-up s: the first step alone (compilation, autotuning, graph capture)")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"note ({r.name}): {r.note}" for r in report.results if r.note]
    return "\n".join(lines)


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width},.{digits}f}" if value is not None else f"{'-':>{width}}"
