"""`resnets export`: ONNX, TorchScript, exported program or safetensors, verified before kept.

The command's own decisions live here: what SOURCE names (a run, a weights file, or a model to
build with random weights), where the file goes when --out is not given, whether it can be
written there (checked before minutes of exporting), and how the report reads.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from torch import nn

from resnets.cli.common import add_precision_option, parse_input_size, print_json
from resnets.errors import ExportError, SpecError
from resnets.export.exporter import (
    FORMATS,
    STATIC_BATCH,
    TOLERANCE,
    ExportReport,
    check_options,
    export,
)
from resnets.models.create import create_model
from resnets.text import human_bytes
from resnets.weights.format import WeightsMeta, meta_for_model
from resnets.weights.load import find_weights, load_model

WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def add_export(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "export",
        help="write a model as ONNX, TorchScript, a torch.export program or safetensors, verified",
        description=(
            "Export a trained model (a run directory or one of our .safetensors files), or a named\n"
            "model with random weights, and verify the file before keeping it: it is loaded back by\n"
            "its own runtime (onnx.checker + onnxruntime, torch.jit.load, torch.export.load, resnets)\n"
            "and its outputs compared with the eager fp32 model on random inputs (batch 1, or 1 and 3\n"
            "with --dynamic-batch). Tolerance: 1e-4 x max(1, max |logit|) for fp32, 1e-2 x for fp16,\n"
            "5e-2 x for bf16. The file is written under a temp name and renamed only if it passes."
        ),
        epilog=(
            "examples:\n"
            "  resnets export runs/resnet20-digits-20250101-120000 --format onnx --dynamic-batch\n"
            "  resnets export model.safetensors --format exported-program --fold-bn --out model.pt2\n"
            "  resnets export resnet18 --format onnx --precision fp16   (random weights)\n"
            "see docs/export.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="WEIGHTS_OR_RUN_OR_MODEL",
        help="a run directory, one of our .safetensors files, or a model name/spec (random weights)",
    )
    p.add_argument(
        "--model",
        help="the network a foreign weights file holds (e.g. a torchvision .pth: --model resnet50)",
    )
    p.add_argument("--format", required=True, choices=list(FORMATS), help="what to write")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="file to write (default: next to the weights with the format's extension, or ./MODEL.EXT)",
    )
    p.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help="ONNX opset, 7 up to the newest the installed onnx knows; 10+ for option-A networks "
        "(default: the exporter's; below 18 uses torch's TorchScript-based exporter)",
    )
    p.add_argument(
        "--dynamic-batch", action="store_true", help="leave the batch size free (default: fixed at 1)"
    )
    p.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold BatchNorm into the convolutions first (not for safetensors)",
    )
    add_precision_option(
        p,
        "weights and input dtype: fp16 for onnx; fp16/bf16 for torchscript, exported-program (default: fp32)",
    )
    p.add_argument(
        "--input-size",
        type=parse_input_size,
        metavar="N",
        help="input resolution, N or HxW (default: the weights' own, else 224 for ImageNet nets, 32 for CIFAR)",
    )
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:

    check_options(args.format, opset=args.opset, fold_bn=args.fold_bn, precision=args.precision)
    if args.out is not None:
        check_writable(args.out)
    model, meta, weights = load_source(args.source, model=args.model)
    out = args.out or default_out(
        args.source, weights, args.format, fold_bn=args.fold_bn, precision=args.precision
    )
    check_writable(out)
    report = export(
        model,
        args.format,
        out,
        meta=meta,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        fold_bn=args.fold_bn,
        precision=args.precision,
        input_size=args.input_size,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    return 0


def load_source(
    source: str | os.PathLike, model: str | None = None
) -> tuple[nn.Module, WeightsMeta, Path | None]:
    """(model, metadata, weights file) for what SOURCE names: a run directory or weights file
    when the path exists (`model` names the network of a file that does not say), else a model
    name or spec, built with random weights (handy for trying a runtime)."""
    path = Path(source)
    if path.exists():
        net, meta = load_model(path, "cpu", model=model)
        return net, meta, find_weights(path)[0]
    text = str(source)
    try:
        net = create_model(text)
    except SpecError as exc:
        if os.sep in text or "/" in text or Path(text).suffix in WEIGHTS_SUFFIXES:
            raise ExportError(f"{text}: no such run directory, weights file or model name") from None
        raise ExportError(f"{text}: not a run directory or weights file, and {exc}") from None
    return net.eval(), meta_for_model(net), None


def default_out(
    source: str | os.PathLike, weights: Path | None, format: str, *, fold_bn: bool, precision: str
) -> Path:
    """Next to the weights (run/model.safetensors -> run/model.onnx), or ./<model>.<ext>."""
    tag = ("-folded" if fold_bn else "") + ("" if precision == "fp32" else f"-{precision}")
    if weights is not None:
        out = weights.with_name(weights.stem + tag + FORMATS[format])
        if out == weights:
            raise ExportError(f"exporting {weights} as safetensors would overwrite it; pass --out FILE")
        return out
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(source))
    return Path(name[:80] + tag + FORMATS[format])


def check_writable(out: str | os.PathLike) -> Path:
    """Fail early, with one line, if `out` cannot be written: before minutes of exporting."""
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise ExportError(f"{out}: cannot write here (folder {parent} does not exist)")
    if not parent.is_dir():
        raise ExportError(f"{out}: cannot write here ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: cannot write here ({parent} is not writable)")
    return out


def format_report(report: ExportReport) -> str:
    """What was written, how, and the verification: one line per checked batch size."""
    c, h, w = report.input_shape
    batch = "N" if report.dynamic_batch else str(STATIC_BATCH)
    opset = f", opset {report.opset}" if report.opset is not None else ""
    options = [report.precision] + (["BN folded"] if report.fold_bn else [])
    lines = [
        f"wrote {report.path} ({human_bytes(report.size_bytes)})",
        f"format: {report.format} via {report.exporter}{opset}; {report.model}, input {batch}x{c}x{h}x{w}, "
        + ", ".join(options),
        f"verified against the eager fp32 model, tolerance {report.tolerance:.2g} "
        f"(= {TOLERANCE[report.precision]:g} x max(1, max |logit|)):",
    ]
    for check in report.checks:
        lines.append(f"  batch {check.batch_size}: max abs diff {check.max_abs_diff:.3g}")
    return "\n".join(lines)
