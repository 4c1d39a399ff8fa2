"""`resnets bench`: our fast path against torchvision (and onnxruntime) in the same loop."""

from __future__ import annotations

import argparse
import sys

from resnets.bench import runner as bench
from resnets.cli.common import print_json


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time our fast path against torchvision (and onnxruntime) in one process",
        description=(
            "Time training or inference steps of our fast path (resnets.optimize: channels-last, "
            "autocast, torch.compile, CUDA graphs, fused SGD, BN folding) and, in the same process "
            "with the same loop, batch, precision, memory format and synthetic data already on the "
            "device, the peers you name. Warm-up steps (compilation, autotuning, graph capture) are "
            "not timed; the result is the median of several timed chunks. Prints img/s, ms per "
            "step, peak memory and our ratio to each peer."
        ),
        epilog=(
            "Examples: 'resnets bench --device cuda --mode train --compare torchvision,torchvision-compile' "
            "(the issue's ResNet-50 setting: batch 256, bf16); "
            "'resnets bench --device cpu --mode infer --compare torchvision,onnxruntime' (batch 1, fp32). "
            "Models torchvision does not have (e.g. resnet20) skip the torchvision peers."
        ),
    )
    p.add_argument("--model", default="resnet50", help="model name or spec (default: resnet50)")
    p.add_argument(
        "--mode", choices=["train", "infer"], default="train", help="time SGD steps or forward passes"
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, help="default: 256 on CUDA; on CPU 1 (infer) or 8 (train)")
    p.add_argument("--input-size", type=int, help="square input side in pixels (default: the model's own)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument(
        "--compare",
        default="torchvision",
        help="comma-separated peers: torchvision, torchvision-compile, onnxruntime (CPU inference); '' for none",
    )
    p.add_argument("--steps", type=int, default=30, help="timed steps (default: 30)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks; the median is reported (default: 5)")
    p.add_argument(
        "--compile-mode",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode for our model (default: optimize's choice per device and mode)",
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
    import torch
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = bench.default_settings(
        model=args.model,
        mode=args.mode,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        input_size=args.input_size,
        compare=bench.peer_names(args.compare),
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        compile=args.compile,
        compile_mode=args.compile_mode,
        cuda_graph=not args.no_cuda_graph,
        checkpoint_activations=args.checkpoint_activations,
    )
    bars: list[tqdm] = []

    def on_step(peer: str):
        if bars:
            bars[-1].close()
        bars.append(
            tqdm(total=bench.steps_total(settings), desc=peer, unit="step", file=sys.stderr, leave=False)
        )
        return bars[-1].update

    try:
        report = bench.run_bench(settings, on_step=on_step)
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format_table())
    return 0
