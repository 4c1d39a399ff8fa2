"""What every command shares: one-line usage errors, model and weights flags, JSON output."""

from __future__ import annotations

import argparse
import json
from typing import Any

from resnets.models.create import MODEL_OVERRIDES
from resnets.preprocess import INTERPOLATIONS, Preprocess
from resnets.runtime.device import PRECISIONS
from resnets.text import parse_size
from resnets.weights.sources import is_assumed

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_input_size(text: str) -> int | tuple[int, int]:
    """--input-size: '224' -> 224; '224x320' -> (224, 320) as (H, W) (text.parse_size), with
    argparse's one-line usage error for anything else."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    group.add_argument("--width-multiplier", type=float, help="multiplier on every stage width")
    group.add_argument("--drop-path-rate", type=float, help="stochastic depth rate at the last block")
    group.add_argument(
        "--zero-init-residual",
        action="store_true",
        default=None,
        help="start every residual branch at zero (last BN gamma = 0)",
    )


def add_preprocess_options(parser: argparse.ArgumentParser) -> None:
    """--mean/--std/--crop-pct/--interpolation: set the evaluation pipeline where the weights'
    recorded one is wrong or was assumed (a file of unknown origin)."""
    group = parser.add_argument_group(
        "preprocessing (default: what the weights record, or their source's; see docs/weights.md)"
    )
    group.add_argument("--mean", type=float_list, metavar="R,G,B", help="per-channel mean on 0..1 pixels")
    group.add_argument("--std", type=float_list, metavar="R,G,B", help="per-channel std on 0..1 pixels")
    group.add_argument(
        "--crop-pct",
        type=float,
        metavar="F",
        help="centre-crop fraction (timm's crop_pct): the shorter side is resized to input size / F, "
        "e.g. 0.875 (224 of 256); 1 resizes to the input size itself",
    )
    group.add_argument(
        "--interpolation",
        choices=list(INTERPOLATIONS),
        help="resize interpolation (torchvision: bilinear; timm's ResNets: mostly bicubic)",
    )


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing flags the user set, for Preprocess.with_overrides."""
    keys = ("mean", "std", "crop_pct", "interpolation", "input_size", "resize_size")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def assumed_note(prog: str, record: Preprocess, what: str) -> str | None:
    """The one line saying which pipeline is assumed for weights of unknown origin (None when
    the weights or their source say)."""
    if not is_assumed(record):
        return None
    return (
        f"{prog}: note: {what} does not say how its images were preprocessed; assuming "
        f"{record.describe()} (set --mean/--std/--crop-pct/--interpolation to change it)"
    )


def float_list(text: str) -> list[float]:
    """'0.5,0.5,0.5' -> [0.5, 0.5, 0.5], with argparse's one-line usage error otherwise."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def add_weights_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--weights/--reset-head for commands that build a model: any file 'resnets convert' reads."""
    parser.add_argument(
        "--weights",
        metavar="PATH",
        help=f"{what}: .safetensors, or a torchvision/timm/CIFAR .pth/.pt/.th/.tar state dict "
        "(read without unpickling code; see docs/weights.md)",
    )
    parser.add_argument(
        "--reset-head",
        action="store_true",
        help="keep a fresh classifier when the file's has another size (for fine-tuning)",
    )


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """How eval and predict run the network (both through resnets.optimize(mode="infer"))."""
    add_precision_option(
        parser, "run the network under autocast at this precision; outputs come back fp32 (default: fp32)"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="compile the network (default: on: CUDA graphs on CUDA; on the CPU, for fp32, a frozen "
        "graph run by oneDNN Graph, built in about a second, falling back to eager in one line "
        "where it cannot be built); --no-compile runs it eagerly (BN folded, channels-last)",
    )


def add_precision_option(parser: argparse.ArgumentParser, help: str) -> None:
    """--precision, one of runtime.device.PRECISIONS (fp32, bf16, fp16), default fp32."""
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help=help)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model override flags the user set (models.create.MODEL_OVERRIDES), for create_model."""
    return {k: getattr(args, k) for k in MODEL_OVERRIDES if getattr(args, k, None) is not None}


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
