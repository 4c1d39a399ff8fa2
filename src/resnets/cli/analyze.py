"""`resnets analyze responses`: the layer responses of Fig. 7 for one run or weights file."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnets.cli.common import OneLineParser, positive_int, print_json
from resnets.reproduce import analyze_responses
from resnets.reproduce.responses import write_responses
from resnets.text import format_table


def add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="measure a trained network on its data: its layer responses (Fig. 7)",
        description="Measure a trained network on its test data.",
    )
    what = p.add_subparsers(dest="analysis", metavar="ANALYSIS", parser_class=OneLineParser)
    what.required = True
    r = what.add_parser(
        "responses",
        help="the std of each 3x3 layer's response after BN (He et al. 2015, Fig. 7)",
        description=(
            "The standard deviation of each 3x3 layer's response (its output after BN, before the "
            "ReLU or the addition: sec. 4.2, Fig. 7) over the test images, in layer order: over "
            "the run's own validation split (the test set of paper-cifar runs) or --data. Prints a "
            "table and writes responses.csv and responses.png (into the run directory unless --out)."
        ),
        epilog=(
            "examples:\n"
            "  resnets analyze responses reproduction/digits-smoke/runs/resnet56-seed0\n"
            "  resnets analyze responses model.safetensors --data ~/cifar10-jpg --json\n"
            "  resnets reproduce fig7     # the paper's five networks side by side"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("path", metavar="RUN_OR_WEIGHTS", help="a run directory or a weights file")
    r.add_argument(
        "--data",
        help="what to measure on (as for 'resnets train --data'); default: the run's validation split",
    )
    r.add_argument("--data-dir", help="where cifar10/cifar100 are (default: the run's)")
    r.add_argument("--model", help="the network a weights file without our metadata holds (e.g. resnet20)")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    r.add_argument("--batch-size", type=positive_int, default=256, help="images per batch (default: 256)")
    r.add_argument("--workers", type=int, help="DataLoader workers for image folders")
    r.add_argument(
        "--out", help="folder for responses.csv and .png (default: the run directory or the weights' folder)"
    )
    r.add_argument("--json", action="store_true", help="print JSON (model, data, images, mean_std, layers)")
    # errors read "resnets analyze responses: error: ...", as argparse's own do
    r.set_defaults(func=run_responses, command="analyze responses")


def run_responses(args: argparse.Namespace) -> int:
    responses = analyze_responses(
        args.path,
        data=args.data,
        data_dir=args.data_dir,
        model=args.model,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    out = (
        Path(args.out)
        if args.out
        else (Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent)
    )
    files = write_responses(out, responses)
    if args.json:
        print_json({**responses.to_dict(), "files": files})
        return 0
    print(
        f"{responses.label} on {responses.data}: {responses.images:,} images, {len(responses.layers)} "
        f"3x3 layers, mean response std {responses.mean_std:.4f}"
    )
    rows = [
        (str(r.index), r.name, r.stage, str(r.channels), f"{r.std:.4f}", f"{r.mean:+.4f}")
        for r in responses.layers
    ]
    print(format_table(("layer", "module", "stage", "channels", "std", "mean"), rows, right={0, 3, 4, 5}))
    print(f"wrote {files['csv']} and {files['png']}")
    return 0
