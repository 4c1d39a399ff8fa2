"""`resnets explain`: Grad-CAM heat-maps over images, one PNG each, and the class explained."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from PIL import Image

from resnets.atomic import atomic_write
from resnets.cli.common import positive_int
from resnets.cli.predict import image_files
from resnets.data.images import open_rgb
from resnets.data.walk import describe_skipped
from resnets.errors import InputError, ResNetsError
from resnets.gradcam import default_layer, find_layer, overlay
from resnets.infer import Classifier, Explanation


def add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="Grad-CAM heat-maps: where in each image the network found its class",
        description=(
            "Grad-CAM (Selvaraju et al. 2017): the last stage's feature maps weighted by the gradient "
            "of the class score, showing where in an image the network found the evidence for a "
            "class. Each image is preprocessed as for 'resnets predict' (the weights' recorded "
            "resize, crop, grayscale, mean/std); the heat-map is drawn over the picture the network "
            "saw (red: strongest evidence) and written as a PNG into --out. Prints, per image, the "
            "class explained with its probability and the PNG written."
        ),
        epilog=(
            "Files that cannot be read are reported on stderr and skipped (exit code 1). Examples: "
            "'resnets explain runs/resnet20-digits-* digit.png'; "
            "'resnets explain resnet50.safetensors cat.jpg --class 281 --layer layer3 --out maps/'. "
            "Needs the grad-cam package: pip install 'resnets[explain]'."
        ),
    )
    p.add_argument("weights", metavar="WEIGHTS_OR_RUN", help="a run directory or a .safetensors file")
    p.add_argument("paths", metavar="IMAGE", nargs="+", help="image files and folders of images")
    p.add_argument(
        "--model", help="the network a foreign weights file holds (e.g. a torchvision .pth: --model resnet50)"
    )
    p.add_argument(
        "--layer",
        help="the layer whose maps are weighted, as in state_dict names: layer4, layer3.1, ... "
        "(default: the last stage: layer4, or layer3 for CIFAR networks)",
    )
    p.add_argument(
        "--class",
        dest="target",
        metavar="C",
        help="the class to explain, by name or index (default: each image's most probable class)",
    )
    p.add_argument(
        "--out",
        default="gradcam",
        metavar="DIR",
        help="folder for the PNGs, created if need be (default: gradcam)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per pass (default: 16)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object per line: {"file", "class", "probability", "heatmap"} or {"file", "error"}',
    )
    p.set_defaults(func=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    files, passed_over = image_files(args.paths)
    out = Path(args.out)
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--out {out}: {folder} is a file, not a folder")
    classifier = Classifier(args.weights, device=args.device, batch_size=args.batch_size, model=args.model)
    target = None if args.target is None else classifier.class_index(args.target)
    network = classifier.model.model
    layer = args.layer or default_layer(network)
    find_layer(network, layer)  # an unknown layer is one line before any work
    if passed_over:
        print(f"resnets explain: passed over {describe_skipped(passed_over)}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    width = max(len(str(f)) for f in files)
    failed = 0
    if not args.json:
        print(f"{'file':<{width}}  class explained ({layer})  heat-map")
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        for path, found in zip(chunk, explain_files(classifier, chunk, target, layer)):
            if isinstance(found, str):
                failed += 1
                print(f"resnets explain: skipped {found}", file=sys.stderr)
                if args.json:
                    print(json.dumps({"file": str(path), "error": found}))
                continue
            png = unique_name(out, path.stem, found.label, names)
            atomic_write(png, lambda tmp, e=found: overlay(e.image, e.heatmap).save(tmp, format="PNG"))
            if args.json:
                row = {"file": str(path), "class": found.label, "probability": found.probability}
                print(json.dumps({**row, "layer": layer, "heatmap": str(png)}))
            else:
                explained = f"{found.label} ({100 * found.probability:.2f}%)"
                print(f"{str(path):<{width}}  {explained:<{17 + len(layer)}}  {png}")
    if failed:
        print(f"resnets explain: {failed} of {len(files)} file(s) skipped", file=sys.stderr)
    return 1 if failed else 0


def explain_files(
    classifier: Classifier, paths: list[Path], target: int | None, layer: str
) -> list[Explanation | str]:
    """Each file's Explanation, or the one-line reason it could not be read; the readable ones
    go through the network together."""
    decoded: list[Image.Image | str] = []
    for path in paths:
        try:
            decoded.append(open_rgb(path))
        except ResNetsError as exc:
            decoded.append(str(exc))
        except OSError as exc:
            decoded.append(f"{path}: {exc.strerror or exc}")
    good = [image for image in decoded if not isinstance(image, str)]
    found = iter(classifier.explain(good, target=target, layer=layer) if good else [])
    return [item if isinstance(item, str) else next(found) for item in decoded]


def unique_name(folder: Path, stem: str, label: str, taken: set[str]) -> Path:
    """folder/<stem>-<class>.png, with -2, -3, ... when two images share a stem."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{stem}-{label}")
    name, n = f"{safe}.png", 1
    while name in taken:
        n += 1
        name = f"{safe}-{n}.png"
    taken.add(name)
    return folder / name
