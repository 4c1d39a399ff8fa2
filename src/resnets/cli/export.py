"""`resnets export`: ONNX, TorchScript, exported program or safetensors, verified before kept."""

from __future__ import annotations

import argparse

from resnets.cli.common import parse_input_size, print_json
from resnets.export.exporter import FORMATS, check_options, check_writable, default_out, export, load_source


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
        help="ONNX opset (default: the exporter's; below 18 uses torch's TorchScript-based exporter)",
    )
    p.add_argument(
        "--dynamic-batch", action="store_true", help="leave the batch size free (default: fixed at 1)"
    )
    p.add_argument(
        "--fold-bn",
        action="store_true",
        help="fold BatchNorm into the convolutions first (not for safetensors)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "bf16"],
        default="fp32",
        help="weights and input dtype: fp16 for onnx; fp16/bf16 for torchscript, exported-program (default: fp32)",
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
        print(report.format_text())
    return 0
