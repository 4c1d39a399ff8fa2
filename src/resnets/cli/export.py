"""`resnets export`: ONNX, TorchScript, exported program or safetensors, verified before kept.

The command's own decisions live here: what SOURCE names (a run, a weights file, or a model to
build with random weights), where the file goes when --out is not given, whether it can be
written there (checked before minutes of exporting), and how the report reads.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn
from tqdm import tqdm

from resnets.cli.common import add_precision_option, parse_input_size, print_json
from resnets.data import ImageData, load_data
from resnets.errors import DataError, ExportError, SpecError
from resnets.export.exporter import (
    FORMATS,
    STATIC_BATCH,
    TOLERANCE,
    ExportReport,
    check_options,
    export,
)
from resnets.export.int8 import CALIBRATION_IMAGES, HELDOUT_IMAGES, MAX_DROP, Int8Options, check_int8
from resnets.models.create import create_model
from resnets.text import human_bytes, size_hw
from resnets.train.build import load_training_data
from resnets.train.run_dir import read_run_config
from resnets.weights.format import WeightsMeta, meta_for_model
from resnets.weights.load import checkpoint_note, find_weights, load_model

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
            "5e-2 x for bf16. The file is written under a temp name and renamed only if it passes.\n"
            "\n"
            "--int8 writes an ONNX model statically quantized by onnxruntime (QDQ, per-channel int8\n"
            "weights, uint8 activations) calibrated on a sample of the run's training images (or\n"
            "--calibrate DATA's), and verifies it on held-out images: top-1 agreement with the fp32\n"
            "model and the change in top-1 accuracy, printed and written beside the file (FILE.json);\n"
            "a drop beyond --max-accuracy-drop points is refused."
        ),
        epilog=(
            "examples:\n"
            "  resnets export runs/resnet20-digits-20250101-120000 --format onnx --dynamic-batch\n"
            "  resnets export model.safetensors --format exported-program --fold-bn --out model.pt2\n"
            "  resnets export resnet18 --format onnx --precision fp16   (random weights)\n"
            "  resnets export runs/resnet20-digits-20250101-120000 --format onnx --int8\n"
            "  resnets export resnet20.safetensors --format onnx --int8 --calibrate ~/cifar10-jpg\n"
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
    int8 = p.add_argument_group("INT8 (ONNX)")
    int8.add_argument(
        "--int8",
        action="store_true",
        help="write a statically quantized INT8 ONNX model, calibrated and verified on real images",
    )
    int8.add_argument(
        "--calibrate",
        metavar="DATA",
        help="images to calibrate on (its training part) and verify on (its held-out part), as "
        "'resnets train --data' takes them: a folder of class folders (with train/ and val/ or "
        "test/), digits, cifar10, ... (default: the run's own data)",
    )
    int8.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        metavar="N",
        help=f"training images to calibrate on, a fixed sample (default: {CALIBRATION_IMAGES})",
    )
    int8.add_argument(
        "--heldout-images",
        type=int,
        default=HELDOUT_IMAGES,
        metavar="N",
        help=f"held-out images to verify on, a fixed sample; 0 for all (default: {HELDOUT_IMAGES})",
    )
    int8.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=MAX_DROP,
        metavar="POINTS",
        help=f"refuse the INT8 model if its held-out top-1 falls by more (default: {MAX_DROP:g})",
    )
    int8.add_argument("--data-dir", help="where cifar10/cifar100 are for --calibrate (default: the run's)")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:

    check_options(args.format, opset=args.opset, fold_bn=args.fold_bn, precision=args.precision)
    if args.int8 or args.calibrate:
        if not args.int8:
            raise ExportError("--calibrate is for --int8; add --int8 or drop --calibrate")
        check_int8(
            args.format,
            args.precision,
            opset=args.opset,
            calibration_images=args.calibration_images,
            heldout_images=args.heldout_images,
            max_drop=args.max_accuracy_drop,
        )
    if args.out is not None:
        check_writable(args.out)
    model, meta, weights = load_source(args.source, model=args.model)
    if note := checkpoint_note(meta):  # an unfinished run: say which weights these are
        print(f"resnets export: note: {note}", file=sys.stderr)
    tag = "int8" if args.int8 else args.precision
    out = args.out or default_out(args.source, weights, args.format, fold_bn=args.fold_bn, precision=tag)
    check_writable(out)
    int8 = None
    if args.int8:
        data = int8_data(args.source, args.calibrate, meta, args.input_size, data_dir=args.data_dir)
        int8 = Int8Options(
            data=data,
            calibration_images=args.calibration_images,
            heldout_images=args.heldout_images,
            max_drop=args.max_accuracy_drop,
        )
    bars: list[tqdm] = []
    try:
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
            int8=int8,
            progress=progress_bars(bars),
        )
    finally:
        for bar in bars:
            bar.close()
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


def int8_data(
    source: str | os.PathLike,
    calibrate: str | None,
    meta: WeightsMeta,
    input_size: int | tuple[int, int] | None,
    *,
    data_dir: str | None = None,
) -> ImageData:
    """What an INT8 export calibrates and verifies on: `calibrate` (anything 'resnets train --data'
    takes), loaded at the export's input size, or else the data of the run SOURCE is part of,
    with the run's own held-out split. Raises ExportError for a weights file outside a run
    without `calibrate`."""
    _, run_dir = find_weights(Path(source)) if Path(source).exists() else (None, None)
    config = read_run_config(run_dir) if run_dir is not None else None
    if calibrate is None:
        if config is None:
            raise ExportError(
                f"--int8 calibrates on real images: pass --calibrate DATA (a folder of class folders, "
                f"digits, cifar10, ...) for {source}, which is not part of a run directory"
            )
        return load_training_data(config.replace(data_dir=data_dir or config.data_dir, download=False))
    size = size_hw(input_size or meta.input_size or 224)
    if size[0] != size[1]:
        raise ExportError("--int8 calibrates on square images; give --input-size N")
    try:
        return load_data(
            calibrate,
            input_size=size[0],
            data_dir=data_dir or (config.data_dir if config is not None else "data"),
            default_size=size[0],
            synthetic_count=config.synthetic_count if config is not None else 512,
            synthetic_classes=len(meta.classes) if meta.classes else 10,
        )
    except DataError as exc:
        if "no validation data" not in str(exc):
            raise
        # the loader's advice (--val-split) is a train flag, which export does not have
        raise ExportError(
            f"--calibrate {calibrate}: no held-out images to verify on; give a folder with "
            "train/<class>/... and val/<class>/... (or test/)"
        ) from None


def progress_bars(bars: list[tqdm]) -> Callable[[str, int], Callable[[int], None]]:
    """A progress bar per stage of a long export (INT8: calibrating, verifying), on a terminal
    only; `bars` collects them to be closed."""

    def start(stage: str, total: int) -> Callable[[int], None]:
        if bars:
            bars[-1].close()
        bars.append(tqdm(total=total, desc=stage, unit="img", file=sys.stderr, leave=False, disable=None))
        return bars[-1].update

    return start


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
    """What was written, how, and the verification: one line per checked batch size (INT8: the
    held-out comparison, format_int8)."""
    wrote = f"wrote {report.path} ({human_bytes(report.size_bytes)})"
    if report.int8 is not None:
        return "\n".join([wrote, *format_int8(report)])
    c, h, w = report.input_shape
    batch = "N" if report.dynamic_batch else str(STATIC_BATCH)
    opset = f", opset {report.opset}" if report.opset is not None else ""
    options = [report.precision] + (["BN folded"] if report.fold_bn else [])
    lines = [
        wrote,
        f"format: {report.format} via {report.exporter}{opset}; {report.model}, input {batch}x{c}x{h}x{w}, "
        + ", ".join(options),
        f"verified against the eager fp32 model, tolerance {report.tolerance:.2g} "
        f"(= {TOLERANCE[report.precision]:g} x max(1, max |logit|)):",
    ]
    for check in report.checks:
        lines.append(f"  batch {check.batch_size}: max abs diff {check.max_abs_diff:.3g}")
    return "\n".join(lines)


def format_int8(report: ExportReport) -> list[str]:
    """How an INT8 file was made and how it compares with the fp32 model on held-out images."""
    c, h, w = report.input_shape
    batch = "N" if report.dynamic_batch else str(STATIC_BATCH)
    check = report.int8
    assert check is not None
    s = check.settings
    return [
        f"format: onnx via {report.exporter}, opset {report.opset}; {report.model}, input {batch}x{c}x{h}x{w}, "
        f"INT8 by onnxruntime ({s['format']}: weights {s['weights']}, activations {s['activations']}, "
        f"{s['calibration']} ranges over {check.calibration_images:,} calibration images of {check.data}"
        + ("; 7-bit weights: this CPU has no VNNI)" if s.get("reduce_range") else ")"),
        f"verified on {check.heldout_images:,} held-out images of {check.data} against the eager fp32 model:",
        f"  top-1 agreement {100 * check.agreement:.2f}%",
        f"  top-1 accuracy {100 * check.top1_fp32:.2f}% -> {100 * check.top1_int8:.2f}% "
        f"({check.change:+.2f} points; a drop of at most {check.max_drop:g} allowed)",
        f"report: {report.report_path}",
    ]
