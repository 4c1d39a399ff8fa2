"""`resnets list` and `resnets summary`: the zoo and paper Table 1 for any network."""

from __future__ import annotations

import argparse
from typing import Any

from resnets.cli.common import (
    add_model_options,
    add_weights_options,
    model_overrides,
    parse_input_size,
    print_json,
)
from resnets.errors import SpecError
from resnets.inspect.explain import explain, format_explanation
from resnets.inspect.listing import model_listing
from resnets.inspect.summary import summary
from resnets.models.create import create_model, list_models
from resnets.text import format_table, human
from resnets.weights.load import load_weights


def add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="every named network with its family, parameters and multiply-adds",
        description="List every named network: family, depth, parameters and MACs at its default input size.",
        epilog=(
            "examples:\n"
            "  resnets list                      every network\n"
            "  resnets list 'resnet5*'           names that start with resnet5 (shell-style, as timm's list_models)\n"
            "  resnets list 'preact_*' --json    the pre-activation networks as JSON"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "patterns",
        nargs="*",
        metavar="PATTERN",
        help="only names matching one of these shell-style patterns (quote them: 'resnet5*')",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    rows = model_listing(list_models(args.patterns))
    if not rows:
        raise SpecError(f"no network matches {' or '.join(map(repr, args.patterns))}; see 'resnets list'")
    if args.json:
        print_json(rows)
    else:
        print(format_listing(rows))
    return 0


def format_listing(rows: list[dict[str, Any]]) -> str:
    """The `resnets list` table: parameters and MACs in human units, the input size in pixels."""
    header = ("name", "family", "variant", "layers", "params", "MACs", "input")
    cells = [
        (
            r["name"],
            r["family"],
            r["variant"],
            str(r["layers"]),
            human(r["params"]),
            human(r["macs"]),
            f"{r['input_size']}px",
        )
        for r in rows
    ]
    return format_table(header, cells)


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
    p.add_argument(
        "--explain",
        action="store_true",
        help="add a plain-language line per stage (with --json: an 'explain' text per stage)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_weights_options(p, "load these weights into the network (checks that they fit)")
    add_model_options(p)
    p.add_argument(
        "--output-stride",
        type=int,
        metavar="N",
        help="dilate the last stages instead of striding, so the network downsamples by N (8 or 16 "
        "for ImageNet nets, as torchvision's replace_stride_with_dilation)",
    )
    p.set_defaults(func=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    overrides = {**model_overrides(args), "output_stride": args.output_stride}
    if args.weights:
        model = create_model(args.model, **overrides)
        load_weights(model, args.weights, reset_head=args.reset_head)
    else:
        model = create_model(args.model, device="meta", **overrides)
    table = summary(model, input_size=args.input_size)
    if args.json:
        data = table.to_dict()
        if args.explain:
            for stage, text in zip(data["stages"], explain(table)):
                stage["explain"] = text
        print_json({**data, **({"weights": args.weights} if args.weights else {})})
    else:
        print(table)
        if args.explain:
            print()
            print(format_explanation(table))
        if args.weights:
            print(f"weights {args.weights}: every tensor fits and is finite")
    return 0
