"""`resnets convert`: weights from torchvision, timm or CIFAR reproductions into our format."""

from __future__ import annotations

import argparse
import sys

from resnets.cli.common import (
    add_model_options,
    add_preprocess_options,
    assumed_note,
    model_overrides,
    preprocess_overrides,
    print_json,
)
from resnets.weights.convert import convert_weights
from resnets.weights.sources import read_class_names


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn torchvision/timm/CIFAR weights into our .safetensors with class names and preprocessing",
        description=(
            "Read SRC (a .pth/.pt/.th/.tar state dict or training checkpoint from torchvision, timm, "
            "Lightning, DDP or the CIFAR reproduction, or any .safetensors), map its keys onto "
            "--model, check every shape and that every value is finite, and write our safetensors "
            "format with the metadata predict/eval/export need: model spec, class names and the "
            "evaluation pipeline of SRC's source (input size, resize size or crop fraction, "
            "interpolation, mean/std). Pickles are read with torch.load(weights_only=True) only: a "
            "file that needs anything but tensors is refused."
        ),
        epilog=(
            "examples:\n"
            "  resnets convert resnet50-11ad3fa6.pth --model resnet50 --out resnet50.safetensors\n"
            "  resnets convert resnet20-12fca82f.th --model resnet20 --out resnet20.safetensors\n"
            "  resnets convert ft.pth --model resnet18 --num-classes 37 --classes pets.txt --out pets.safetensors\n"
            "1000-class ImageNet nets get the bundled ImageNet class names, 10-class CIFAR nets "
            "CIFAR-10's. The pipeline comes from SRC's source: torchvision's published files (by "
            "name) and reference train.py checkpoints, timm (a name like resnet50.a1_in1k, a timm-only "
            "name, its Hugging Face cache, CheckpointSaver files), the CIFAR reproduction (ImageNet "
            "mean/std at 32 px); otherwise the family's is assumed, said in one line on stderr."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SRC", help="the weights file to convert")
    p.add_argument("--model", help="the network SRC holds (required unless SRC is one of our files)")
    p.add_argument("--out", required=True, help="the .safetensors file to write (atomically)")
    p.add_argument("--classes", metavar="FILE", help="class names, one per line, in label order")
    p.add_argument("--input-size", type=int, help="centre-crop size to record (default: the source's)")
    p.add_argument(
        "--resize-size",
        type=int,
        help="shorter side before the crop to record (default: the source's; replaces --crop-pct)",
    )
    p.add_argument(
        "--reset-head",
        action="store_true",
        help="keep a fresh classifier when SRC's has another size than --num-classes",
    )
    p.add_argument("--json", action="store_true", help="print the written metadata as JSON")
    add_preprocess_options(p)
    add_model_options(p)
    p.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:

    classes = read_class_names(args.classes) if args.classes else None
    out, meta = convert_weights(
        args.source,
        args.out,
        args.model,
        classes=classes,
        input_size=args.input_size,
        resize_size=args.resize_size,
        reset_head=args.reset_head,
        preprocess=preprocess_overrides(args),
        **model_overrides(args),
    )
    record = meta.preprocess
    assert record is not None
    note = assumed_note("resnets convert", record, args.source)
    if note and not preprocess_overrides(args):
        print(note, file=sys.stderr)
    if args.json:
        fields = {"model": meta.model, "spec": meta.spec, "classes": meta.classes, "extra": meta.extra}
        preprocess = {k: v for k, v in record.to_dict().items() if k != "mean_image"}
        print_json(
            {"out": str(out), **{k: v for k, v in fields.items() if v is not None}, "preprocess": preprocess}
        )
        return 0
    names = f"{len(meta.classes)} class names" if meta.classes else "no class names (pass --classes FILE)"
    print(f"wrote {out}: {meta.model}, {names}")
    print(f"preprocessing ({record.source}): {record.describe()}")
    return 0
