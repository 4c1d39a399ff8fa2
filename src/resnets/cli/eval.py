"""`resnets eval`: accuracy, per-class accuracy and a confusion matrix for a run or weights file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnets.cli.common import (
    add_inference_options,
    add_model_options,
    add_preprocess_options,
    assumed_note,
    model_overrides,
    preprocess_overrides,
    print_json,
)
from resnets.evaluate import evaluate_run
from resnets.preprocess import Preprocess
from resnets.text import shorten


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained run or weights file: top-1, top-5, loss, per-class accuracy, confusion matrix",
        description=(
            "Evaluate RUN_DIR's model.safetensors (or a weights file) on its run's validation split, "
            "or on --data. A folder of class folders (DIR/<class>/*.jpg) is evaluated whole (its "
            "val/ part for a train/val layout), its classes matched to the weights' class names by "
            "name. Images go through the preprocessing the weights record (their source's, for a "
            "foreign file). Prints top-1, top-5, loss and per-class accuracy, and writes "
            "confusion_matrix.png (into the run directory unless --out)."
        ),
        epilog=(
            "examples:\n"
            "  resnets eval runs/resnet20-digits-20261123-134932\n"
            "  resnets eval r20.safetensors --data cifar10-jpg/test --json\n"
            "  resnets eval resnet20-12fca82f.th --model resnet20 --data cifar10-jpg/test\n"
            "  resnets eval mine.pth --model resnet50 --data val/ --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        metavar="RUN_DIR_OR_WEIGHTS",
        help="a run directory, a .safetensors file written by 'resnets train' or 'resnets convert', "
        "or a torchvision/timm/CIFAR .pth (then name it with --model)",
    )
    p.add_argument("--model", help="the network a weights file without our metadata holds (e.g. resnet18)")
    p.add_argument(
        "--data",
        help="what to evaluate on (as for 'resnets train --data'); default: the run's validation split",
    )
    p.add_argument("--data-dir", help="where cifar10/cifar100 are (default: the run's)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the run's)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    p.add_argument("--workers", type=int, help="DataLoader workers for image folders")
    p.add_argument(
        "--accept-changed-data",
        action="store_true",
        help="evaluate a run although its data folder changed since it was made: the recorded "
        "validation files that remain (default: refuse, naming how many files were added and removed)",
    )
    add_inference_options(p)
    p.add_argument(
        "--multi-scale",
        action="store_true",
        help="image folders: also the paper's fully-convolutional multi-scale testing (sec. 3.4): "
        "whole images with the shorter side at 224, 256, 384, 480 and 640 px (scaled for other "
        "input sizes), softmax scores averaged",
    )
    p.add_argument(
        "--out",
        help="folder for confusion_matrix.png (default: the run directory, or the weights file's folder)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON (top1, top5, loss, count, per_class, confusion {classes, counts[true][predicted]}, "
        "preprocess, confusion_matrix)",
    )
    add_preprocess_options(p)
    add_model_options(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    report = evaluate_run(
        args.path,
        data=args.data,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        data_dir=args.data_dir,
        out=args.out or default_out(args.path),
        model=args.model,
        precision=args.precision,
        compile=args.compile,
        progress=True,  # on a terminal only
        preprocess=preprocess_overrides(args),
        accept_changed_data=args.accept_changed_data,
        multi_scale=args.multi_scale,
        **model_overrides(args),
    )
    if "weights_note" in report:
        print(f"resnets eval: note: {report['weights_note']}", file=sys.stderr)
    for line in report.get("notes", []):
        print(f"resnets eval: {line}", file=sys.stderr)
    if report["preprocess_assumed"] and not preprocess_overrides(args):  # (a per-channel record)
        note = assumed_note("resnets eval", Preprocess.from_dict(report["preprocess"]), report["weights"])
        print(note, file=sys.stderr)
    if args.json:
        print_json(report)
        return 0
    print(f"{report['weights']} on {report['data']}: {report['count']} images")
    print(f"top-1 {100 * report['top1']:.2f}%  top-5 {100 * report['top5']:.2f}%  loss {report['loss']:.4f}")
    if "top1_10crop" in report:
        print(f"10-crop: top-1 {100 * report['top1_10crop']:.2f}%  top-5 {100 * report['top5_10crop']:.2f}%")
    if "top1_multiscale" in report:
        print(
            f"multi-scale {report['scales']}: top-1 {100 * report['top1_multiscale']:.2f}%  "
            f"top-5 {100 * report['top5_multiscale']:.2f}%"
        )
    width = max(len(c) for c in report["per_class"])
    print(f"{'class':<{width}}  accuracy")
    for name, acc in report["per_class"].items():
        print(f"{name:<{width}}  {'-' if acc is None else f'{100 * acc:7.2f}%'}")
    if report.get("skipped"):
        print(
            f"skipped {len(report['skipped'])} unreadable image(s): {shorten(report['skipped'], 10)}",
            file=sys.stderr,
        )
    print(f"confusion matrix: {report['confusion_matrix']}")
    return 0


def default_out(path: str) -> Path:
    """Where confusion_matrix.png goes without --out: into the run directory, or next to the
    weights file (which is the run directory when the file is a run's)."""
    return Path(path) if Path(path).is_dir() else Path(path).parent
