"""`resnets predict`: classify image files and folders with a run or weights file."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from resnets.cli.common import (
    add_inference_options,
    add_preprocess_options,
    assumed_note,
    positive_int,
    preprocess_overrides,
)
from resnets.data.walk import ImageWalker, Skipped, describe_skipped
from resnets.errors import InputError
from resnets.infer import Classifier, FileResult
from resnets.weights.load import checkpoint_note


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files and folders with a trained run or weights file",
        description=(
            "Classify images with the network in WEIGHTS_OR_RUN, preprocessed as its metadata says "
            "(resize, centre crop, grayscale for one-channel networks, mean/std; an image already at "
            "the input size is used as it is; a foreign file gets its source's pipeline). Reads JPEG, PNG, "
            "WebP, BMP, TIFF and GIF in any mode (grayscale, palette, RGBA, CMYK, 16-bit) and honours "
            "EXIF orientation. Folders are walked recursively (sorted; hidden files and files not "
            "named as images are passed over and listed on stderr; links followed, each file once) "
            "and classified in batches. Prints a table of the top-k classes with their probabilities, "
            "or JSON lines with --json."
        ),
        epilog=(
            "Files that are not images, truncated, or over the pixel limit (decompression bombs) are "
            "reported on stderr, one line each, and skipped. Exit codes: 0 every image was "
            "classified; 1 some files were skipped; 2 usage error (missing path, bad weights), "
            "nothing classified. Example: 'resnets predict runs/resnet20-digits-* digit.png photos/ --topk 3'."
        ),
    )
    p.add_argument("weights", metavar="WEIGHTS_OR_RUN", help="a run directory or a .safetensors file")
    p.add_argument("paths", metavar="IMAGE_OR_FOLDER", nargs="+", help="image files and folders of images")
    p.add_argument(
        "--model",
        help="the network a foreign weights file holds (e.g. a torchvision .pth: --model resnet50)",
    )
    p.add_argument("--topk", type=positive_int, default=5, help="classes to show per image (default: 5)")
    p.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per forward pass (default: 32)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    add_inference_options(p)
    add_preprocess_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object per line: {"file", "topk": [{"class", "probability"}]} or {"file", "error"}',
    )
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm  # here, not at the top: `resnets list` and --help stay quick

    # PIL warns (several lines, no file name) about recoverable damage such as corrupt EXIF; the
    # image still decodes, and a file that does not is reported below in one line.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    files, passed_over = image_files(args.paths)
    classifier = Classifier(
        args.weights,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        compile=args.compile,
        model=args.model,
        preprocess=preprocess_overrides(args),
    )
    if note := checkpoint_note(classifier.meta):  # an unfinished run: say which weights these are
        print(f"resnets predict: note: {note}", file=sys.stderr)
    note = assumed_note("resnets predict", classifier.preprocess_record, args.weights)
    if note and not preprocess_overrides(args):
        print(note, file=sys.stderr)
    if passed_over:  # after the last usage error, which is the only line then
        print(f"resnets predict: passed over {describe_skipped(passed_over)}", file=sys.stderr)
    width = max(len(str(f)) for f in files)
    label_width = min(30, max(len(c) for c in classifier.classes))
    failed = 0
    with tqdm(total=len(files), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        if not args.json:
            shown = min(args.topk, len(classifier.classes))  # --topk 50 on 10 classes shows 10
            tqdm.write(f"{'file':<{width}}  top-{shown} classes", file=sys.stdout)
        for result in classifier.classify_files(files, topk=args.topk):
            if result.error is not None:
                failed += 1
                tqdm.write(f"resnets predict: skipped {result.error}", file=sys.stderr)
            if args.json:
                tqdm.write(json.dumps(result.to_dict()), file=sys.stdout)
            elif result.error is None:
                tqdm.write(format_result(result, width, label_width), file=sys.stdout)
            bar.update()
    if failed:
        print(f"resnets predict: {failed} of {len(files)} file(s) skipped", file=sys.stderr)
    return 1 if failed else 0


def image_files(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Skipped]]:
    """The files named on the command line (tried whatever their extension) and the image files
    inside the folders named (data/walk.py: recursive, sorted, hidden files passed over, each
    real file once), in order; and what the walk passed over. Raises InputError for a path that
    does not exist, or when no image file is found (naming what the walk passed over)."""
    walker = ImageWalker()
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += walker.walk(path)
        elif path.exists():
            files += walker.file(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    if not files:
        why = f" (passed over {describe_skipped(walker.skipped)})" if walker.skipped else ""
        raise InputError(f"no image files in {', '.join(map(str, paths))}{why}")
    return files, walker.skipped


def format_result(result: FileResult, width: int, label_width: int = 0) -> str:
    """One table row: the file, then each top-k class with its probability."""
    cells = [f"{p.label:<{label_width}} {100 * p.probability:6.2f}%" for p in result.predictions or []]
    return f"{result.file:<{width}}  " + "  ".join(cells)
