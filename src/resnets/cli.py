"""The `resnets` command: parse, call the API, print.

Each subcommand is an `add_<name>` function that declares its flags and a `run_<name>` that
does the work through the public API. Errors the user can cause (ResNetsError, missing or
unreadable files) become one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from resnets.errors import ResNetsError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_input_size(text: str) -> int | tuple[int, int]:
    """'224' -> 224; '224x320' -> (224, 320) as (H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Overrides every command that builds a model accepts; unset ones keep the model's defaults."""
    group = parser.add_argument_group("model overrides (default: the named model's own)")
    group.add_argument("--num-classes", type=int, help="classifier outputs")
    group.add_argument("--in-channels", type=int, help="input image channels")
    group.add_argument(
        "--shortcut",
        choices=["A", "B", "C"],
        help="A: zero-padding identity, B: projection when the shape changes, C: projection everywhere (paper sec. 3.3)",
    )
    group.add_argument("--width", type=float, help="multiplier on every stage width")
    group.add_argument("--drop-path-rate", type=float, help="stochastic depth rate at the last block")
    group.add_argument(
        "--zero-init-residual",
        action="store_true",
        default=None,
        help="start every residual branch at zero (last BN gamma = 0)",
    )


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("num_classes", "in_channels", "shortcut", "width", "drop_path_rate", "zero_init_residual")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# --- resnets list ---------------------------------------------------------------------------


def add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="every named network with its family, parameters and multiply-adds",
        description="List every named network: family, depth, parameters and MACs at its default input size.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    from resnets.listing import format_listing, model_listing

    rows = model_listing()
    if args.json:
        print_json(rows)
    else:
        print(format_listing(rows))
    return 0


# --- resnets summary ------------------------------------------------------------------------


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="paper Table 1 for a network: output sizes, blocks, params, MACs per stage",
        description=(
            "Print paper Table 1 for a network, measured on the real module: per stage the output "
            "size, the block in the paper's notation, parameters, multiply-adds (MACs) and FLOPs "
            "(= 2 x MACs), and the downsampling so far."
        ),
        epilog=(
            "MODEL is a name from 'resnets list', a compact spec such as 'bottleneck:3-4-6-3' or "
            "'basic:3-3-3:16-32-64', or Table-1 notation such as "
            "'[3x3,64; 3x3,64]x2, [3x3,128; 3x3,128]x2, [3x3,256; 3x3,256]x2, [3x3,512; 3x3,512]x2'."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model name, compact spec or Table-1 notation")
    p.add_argument(
        "--input-size",
        type=parse_input_size,
        help="input resolution, N or HxW (default: the model's own, 224 for ImageNet nets, 32 for CIFAR)",
    )
    p.add_argument("--explain", action="store_true", help="add a plain-language line per stage")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_model_options(p)
    p.set_defaults(func=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    from resnets.models.create import create_model
    from resnets.models.zoo import default_input_size
    from resnets.summary import summary

    model = create_model(args.model, device="meta", **model_overrides(args))
    table = summary(model, input_size=args.input_size or default_input_size(model.spec))
    if args.json:
        print_json(table.to_dict())
    else:
        print(table.format_table(explain=args.explain))
    return 0


# --- resnets bench --------------------------------------------------------------------------


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

    from resnets import bench

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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_list, add_summary, add_bench]


def build_parser() -> argparse.ArgumentParser:
    from resnets import __version__

    parser = OneLineParser(
        prog="resnets",
        description=(
            "The ResNet family of He et al. 2015, exact: build and inspect any variant, train, "
            "evaluate, predict, export and benchmark."
        ),
        epilog="Run 'resnets COMMAND --help' for the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=f"resnets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ResNetsError as exc:
        print(f"resnets {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"resnets {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"resnets {args.command}: interrupted", file=sys.stderr)
        return 130


def _os_error_text(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
