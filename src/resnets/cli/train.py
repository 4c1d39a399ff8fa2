"""`resnets train`: every TrainConfig field a flag, recipes and config files, parsed into a config
for resnets.train (which also starts torchrun for --nproc-per-node); the summary printed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resnets.cli.common import print_json
from resnets.errors import ResNetsError
from resnets.train.build import with_the_weights_model
from resnets.train.config import config_fields
from resnets.train.launch import is_main_process, train
from resnets.train.recipes import RECIPES, recipe_notes, resolve_recipe
from resnets.train.run_dir import read_run_config


def add_train(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser(
        "train",
        help="train a ResNet (default: ResNet-20 on the bundled digits, about 11 s on an idle 2-core CPU)",
        description=(
            "Train a ResNet with a named recipe, any field of which can be overridden. With no "
            "arguments: ResNet-20 on scikit-learn's bundled handwritten digits (16x16, 20% held "
            "out). Each epoch shows a progress bar (stderr) and a table row (stdout); the run "
            "directory gets config.json, metrics.csv, curves.png, model.safetensors, summary.json "
            "and checkpoint/."
        ),
        epilog=(
            "examples:\n"
            "  resnets train\n"
            "  resnets train --recipe paper-cifar --model resnet56 --data cifar10 --download\n"
            "  resnets train --data path/to/images --model resnet18 --epochs 10 --val-split 0.1\n"
            "  resnets train --recipe modern --print-config toml > my.toml; resnets train --config my.toml\n"
            "  resnets train --resume runs/resnet20-digits-20250101-120000\n"
            "  resnets train --resume runs/resnet20-digits-20250101-120000 --epochs 24 --device cpu\n"
            "  resnets train --weights resnet50.safetensors --reset-head --data ~/pets --val-split 0.1 \\\n"
            "      --freeze all-but-head        # a linear probe; --lr-backbone 0.1 fine-tunes it all\n"
            "  resnets train --nproc-per-node 4 --max-restarts 3 --checkpoint-every-steps 200\n"
            "  torchrun --nproc-per-node 4 -m resnets train --sync-bn --out runs/r50\n"
            "recipes: "
            + ", ".join(RECIPES)
            + " (see docs/training.md; several processes or nodes: docs/distributed.md)\n"
            "paper-cifar trains on all 50,000 CIFAR training images and validates on the 10,000 test\n"
            "images, as the paper's reported numbers did; --val-split 5000 holds out the 45k/5k\n"
            "train/val split the paper chose its schedule on (then validation is those 5,000)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--recipe",
        default="default",
        choices=list(RECIPES),
        help="named configuration to start from (default: default)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML or JSON file of config fields, applied before the command-line flags",
    )
    p.add_argument(
        "--print-config",
        nargs="?",
        const="toml",
        choices=["toml", "json"],
        help="print the resolved configuration (TOML unless 'json') and exit",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint, with its own config; --epochs or "
        "--iterations extend it, and how it runs may change (--device, --workers, --threads, logging "
        "and checkpoint flags); flags that change what it computes are refused",
    )
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    launch = p.add_argument_group(
        "data parallelism on this machine (torchrun is started for you; for several machines run torchrun yourself, see docs/distributed.md)"
    )
    launch.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="train in N processes (one per GPU, or CPU processes with gloo) under torchrun; --batch-size stays the global batch",
    )
    launch.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="with --nproc-per-node: restart the group up to K times when a worker dies; each restart resumes from the last checkpoint (see --checkpoint-every-steps) [default: 0]",
    )
    group = p.add_argument_group("config fields (each overrides the recipe; 'none' unsets an optional one)")
    for f in config_fields():
        _add_config_flag(group, f)
    p.set_defaults(func=run_train)


def _add_config_flag(group: argparse._ArgumentGroup, f: Any) -> None:

    flag = "--" + f.name.replace("_", "-")
    kind = str(f.type)
    default = f.default if not callable(getattr(f, "default_factory", None)) else f.default_factory()
    default = RECIPES["default"].get(f.name, default)
    shown = (
        "none" if default is None else ",".join(map(str, default)) if isinstance(default, list) else default
    )
    help_text = f"{f.metadata['help']} [default recipe: {shown}]"
    if kind.startswith("bool"):
        group.add_argument(
            flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
        )
        return
    if kind.startswith("list"):
        parse: Callable[[str], Any] = _float_list
    elif kind.startswith("int"):
        parse = _optional(int)
    elif kind.startswith("float"):
        parse = _optional(float)
    else:
        parse = _optional(str)
    choices = f.metadata.get("choices")
    metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
    group.add_argument(flag, dest=f.name, type=parse, default=None, metavar=metavar, help=help_text)


_UNSET = "none"


def _optional(cast: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if text.lower() == _UNSET:
            return _Unset
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {cast.__name__}, got {text!r}") from None

    parse.__name__ = cast.__name__
    return parse


def _float_list(text: str) -> Any:
    if text.strip().lower() in ("", _UNSET):
        return []
    try:
        return [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


class _Unset:
    """Marks a flag given as 'none': set the field to None (argparse's None means 'not given')."""


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given on the command line (after those of --config FILE)."""

    overrides = load_config_file(args.config) if args.config else {}
    for f in config_fields():
        value = getattr(args, f.name)
        if value is _Unset:
            overrides[f.name] = None
        elif value is not None:
            overrides[f.name] = value
    return overrides


def load_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (ValueError, ImportError) as exc:
        raise ResNetsError(f"{path}: cannot read config ({exc})") from None
    data = data.get("config", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise ResNetsError(f"{path}: expected a table of config fields")
    known = {f.name for f in config_fields()}
    values = {k.replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ResNetsError(f"{path}: unknown config field(s) {', '.join(unknown)}")
    return values


def format_config(config: Any, fmt: str, recipe: str) -> str:
    data = config.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2)
    import tomli_w

    unset = [k for k, v in data.items() if v is None]
    head = f"# resnets train --recipe {recipe}: the resolved configuration.\n"
    if unset:
        head += f"# unset (TOML has no null): {', '.join(unset)}\n"
    return head + tomli_w.dumps({k: v for k, v in data.items() if v is not None})


def run_train(args: argparse.Namespace) -> int:
    """Parse the flags into a config (or a run to resume), call resnets.train, print the summary."""
    overrides = train_overrides(args)
    if args.resume:
        run_dir: Path | None = Path(args.resume)
        config = read_run_config(run_dir).replace(**overrides)  # resnets.train checks the changes
        notes: list[str] = []
    else:
        run_dir = None
        config = resolve_recipe(args.recipe, **{k: v for k, v in overrides.items() if v is not None})
        config = config.replace(**{k: None for k, v in overrides.items() if v is None}).validate()
        notes = recipe_notes(args.recipe, config)
    if args.print_config:
        config, _ = with_the_weights_model(config)  # the network --weights names, as training builds it
        print(format_config(config, args.print_config, args.recipe))
        return 0
    if is_main_process():
        for note in notes:
            print(f"note: {note}", file=sys.stderr, flush=True)
    summary = train(
        config,
        run_dir,
        resume=bool(args.resume),
        nproc_per_node=args.nproc_per_node,
        max_restarts=args.max_restarts,
        console=True,
        table_stream=sys.stderr if args.json else sys.stdout,  # --json keeps stdout for the JSON alone
    )
    if not is_main_process():
        return 0
    if summary.get("already_complete"):
        print(f"note: {summary['already_complete']}", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        print(format_train_summary(summary))
    return 0


def format_train_summary(s: dict[str, Any]) -> str:
    lines = [
        f"run directory: {s['run_dir']}",
        (
            f"final: val top-1 {100 * s['val_top1']:.2f}%, top-5 {100 * s['val_top5']:.2f}%, "
            f"loss {s['val_loss']:.4f} after {s['epochs']} epochs ({s['steps']} steps) in "
            f"{s['train_seconds']:.1f} s, {s['images_per_second']:.0f} img/s on {s['device']}"
        ),
    ]
    if "val_top1_10crop" in s:
        lines.append(
            f"10-crop: val top-1 {100 * s['val_top1_10crop']:.2f}%, top-5 {100 * s['val_top5_10crop']:.2f}%"
        )
    if s.get("skipped_images"):
        lines.append(f"skipped {len(s['skipped_images'])} unreadable image(s); see summary.json")
    return "\n".join(lines)
