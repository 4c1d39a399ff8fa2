"""The `resnets` command: parse, call the API, print.

Each subcommand is an `add_<name>` function that declares its flags and a `run_<name>` that
does the work through the public API. Errors the user can cause (ResNetsError, missing or
unreadable files) become one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from resnets.errors import ResNetsError

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def parse_input_size(text: str) -> int | tuple[int, int]:
    """'224' -> 224; '224x320' -> (224, 320) as (H, W)."""
    try:
        parts = [int(p) for p in text.lower().replace(",", "x").split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


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
    group.add_argument("--width", type=float, help="multiplier on every stage width")
    group.add_argument("--drop-path-rate", type=float, help="stochastic depth rate at the last block")
    group.add_argument(
        "--zero-init-residual",
        action="store_true",
        default=None,
        help="start every residual branch at zero (last BN gamma = 0)",
    )


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


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("num_classes", "in_channels", "shortcut", "width", "drop_path_rate", "zero_init_residual")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# --- resnets list ---------------------------------------------------------------------------


def add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="every named network with its family, parameters and multiply-adds",
        description="List every named network: family, depth, parameters and MACs at its default input size.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_list)


def run_list(args: argparse.Namespace) -> int:
    from resnets.listing import format_listing, model_listing

    rows = model_listing()
    if args.json:
        print_json(rows)
    else:
        print(format_listing(rows))
    return 0


# --- resnets summary ------------------------------------------------------------------------


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="paper Table 1 for a network: output sizes, blocks, params, MACs per stage",
        description=(
            "Print paper Table 1 for a network, measured on the real module: per stage the output "
            "size, the block in the paper's notation, parameters, multiply-adds (MACs) and FLOPs "
            "(= 2 x MACs), and the downsampling so far."
        ),
        epilog=(
            "MODEL is a name from 'resnets list', a compact spec such as 'bottleneck:3-4-6-3' or "
            "'basic:3-3-3:16-32-64', or Table-1 notation such as "
            "'[3x3,64; 3x3,64]x2, [3x3,128; 3x3,128]x2, [3x3,256; 3x3,256]x2, [3x3,512; 3x3,512]x2'."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="model name, compact spec or Table-1 notation")
    p.add_argument(
        "--input-size",
        type=parse_input_size,
        help="input resolution, N or HxW (default: the model's own, 224 for ImageNet nets, 32 for CIFAR)",
    )
    p.add_argument("--explain", action="store_true", help="add a plain-language line per stage")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_weights_options(p, "load these weights into the network (checks that they fit)")
    add_model_options(p)
    p.set_defaults(func=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    from resnets.models.create import create_model
    from resnets.models.zoo import default_input_size
    from resnets.summary import summary

    if args.weights:
        from resnets.weights import load_weights

        model = create_model(args.model, **model_overrides(args))
        load_weights(model, args.weights, reset_head=args.reset_head)
    else:
        model = create_model(args.model, device="meta", **model_overrides(args))
    table = summary(model, input_size=args.input_size or default_input_size(model.spec))
    if args.json:
        print_json({**table.to_dict(), **({"weights": args.weights} if args.weights else {})})
    else:
        print(table.format_table(explain=args.explain))
        if args.weights:
            print(f"weights {args.weights}: every tensor fits and is finite")
    return 0


# --- resnets train --------------------------------------------------------------------------


def add_train(sub: argparse._SubParsersAction) -> None:
    from resnets.train.config import config_fields
    from resnets.train.recipes import RECIPES

    p = sub.add_parser(
        "train",
        help="train a ResNet (default: ResNet-20 on the bundled digits, about a minute on a CPU)",
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
            "  resnets train --nproc-per-node 4 --max-restarts 3 --checkpoint-every-steps 200\n"
            "  torchrun --nproc-per-node 4 -m resnets train --sync-bn --out runs/r50\n"
            "recipes: "
            + ", ".join(RECIPES)
            + " (see docs/training.md; several processes or nodes: docs/distributed.md)"
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
        help="continue the run in RUN_DIR from its last checkpoint, with its own config",
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
    from resnets.train.recipes import RECIPES

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
    from resnets.train.config import config_fields

    overrides = load_config_file(args.config) if args.config else {}
    for f in config_fields():
        value = getattr(args, f.name)
        if value is _Unset:
            overrides[f.name] = None
        elif value is not None:
            overrides[f.name] = value
    return overrides


def load_config_file(path: str) -> dict[str, Any]:
    from pathlib import Path

    from resnets.train.config import config_fields

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
    from pathlib import Path

    from resnets.train import distributed, ranks
    from resnets.train.config import TrainConfig
    from resnets.train.loop import check_fresh_run_dir, default_run_dir, train
    from resnets.train.recipes import resolve_recipe

    overrides = train_overrides(args)
    if args.resume:
        run_dir = Path(args.resume)
        if overrides:
            flags = ", ".join("--" + k.replace("_", "-") for k in overrides)
            raise ResNetsError(f"--resume continues {run_dir} with its own config; drop {flags}")
        record = run_dir / "config.json"
        if not record.is_file():
            raise ResNetsError(f"{run_dir}: not a run directory (no config.json)")
        config = TrainConfig.from_dict(json.loads(record.read_text(encoding="utf-8"))["config"])
    else:
        config = resolve_recipe(args.recipe, **{k: v for k, v in overrides.items() if v is not None})
        config = config.replace(**{k: None for k, v in overrides.items() if v is None}).validate()
    if args.print_config:
        print(format_config(config, args.print_config, args.recipe))
        return 0
    if args.nproc_per_node is not None:
        if not args.resume:
            run_dir = Path(config.out) if config.out else default_run_dir(config)
            check_fresh_run_dir(run_dir)
        return launch_train(args, run_dir)
    with distributed.process_group(config.device) as device:
        # A worker restarted by torchrun's elastic agent picks up the run's last checkpoint.
        restarted = distributed.restart_count() > 0
        if not args.resume:
            run_dir = distributed.shared_run_dir(config, device)
            if not restarted:
                check_fresh_run_dir(run_dir)
            distributed.barrier()  # every rank has looked before rank 0 writes config.json
        resume = bool(args.resume) or (restarted and (run_dir / "checkpoint" / "latest.json").is_file())
        table = sys.stderr if args.json else sys.stdout  # --json keeps stdout for the JSON alone
        summary = train(config, run_dir, resume=resume, console=True, table_stream=table)
        if not ranks.is_main():
            return 0
    if args.json:
        print_json(summary)
    else:
        print(format_train_summary(summary))
    return 0


def launch_train(args: argparse.Namespace, run_dir: Any) -> int:
    """`resnets train --nproc-per-node N`: the same command in N processes under torchrun."""
    from resnets.train import distributed

    argv = list(args.argv)
    train_args = distributed.strip_flags(
        argv[argv.index("train") + 1 :], ["--nproc-per-node", "--max-restarts"]
    )
    if not args.resume:
        train_args += ["--out", str(run_dir)]
    code = distributed.launch(train_args, args.nproc_per_node, args.max_restarts)
    if code != 0:
        print(
            f"resnets train: error: distributed training failed (torchrun exit code {code}; "
            f"{args.max_restarts} restart(s) allowed); see the worker errors above. "
            f"{run_dir} keeps the last checkpoint, if one was written: continue with "
            f"'resnets train --resume {run_dir} --nproc-per-node {args.nproc_per_node}'",
            file=sys.stderr,
        )
    return code


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


# --- resnets eval ---------------------------------------------------------------------------


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained run or weights file: top-1, top-5, loss, per-class accuracy, confusion matrix",
        description=(
            "Evaluate RUN_DIR's model.safetensors (or a weights file) on its run's validation split, "
            "or on --data. Prints top-1, top-5, loss and per-class accuracy, and writes "
            "confusion_matrix.png (into the run directory unless --out)."
        ),
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
    p.add_argument("--out", help="folder for confusion_matrix.png")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON (top1, top5, loss, count, per_class, confusion_matrix)",
    )
    add_model_options(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from resnets.evaluate import evaluate_run

    report = evaluate_run(
        args.path,
        data=args.data,
        batch_size=args.batch_size,
        device=args.device,
        workers=args.workers,
        data_dir=args.data_dir,
        out=args.out,
        model=args.model,
        **model_overrides(args),
    )
    if args.json:
        print_json(report)
        return 0
    print(f"{report['weights']} on {report['data']}: {report['count']} images")
    print(f"top-1 {100 * report['top1']:.2f}%  top-5 {100 * report['top5']:.2f}%  loss {report['loss']:.4f}")
    if "top1_10crop" in report:
        print(f"10-crop: top-1 {100 * report['top1_10crop']:.2f}%  top-5 {100 * report['top5_10crop']:.2f}%")
    width = max(len(c) for c in report["per_class"])
    print(f"{'class':<{width}}  accuracy")
    for name, acc in report["per_class"].items():
        print(f"{name:<{width}}  {'-' if acc is None else f'{100 * acc:7.2f}%'}")
    if report.get("skipped"):
        print(
            f"skipped {len(report['skipped'])} unreadable image(s): {', '.join(report['skipped'][:10])}",
            file=sys.stderr,
        )
    print(f"confusion matrix: {report['confusion_matrix']}")
    return 0


# --- resnets bench --------------------------------------------------------------------------


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time our fast path against torchvision (and onnxruntime) in one process",
        description=(
            "Time training or inference steps of our fast path (resnets.optimize: channels-last, "
            "autocast, torch.compile, CUDA graphs, fused SGD, BN folding) and, in the same process "
            "with the same loop, batch, precision, memory format and synthetic data already on the "
            "device, the peers you name. Warm-up steps (compilation, autotuning, graph capture) are "
            "not timed; the result is the median of several timed chunks. Prints img/s, ms per "
            "step, peak memory and our ratio to each peer."
        ),
        epilog=(
            "Examples: 'resnets bench --device cuda --mode train --compare torchvision,torchvision-compile' "
            "(the issue's ResNet-50 setting: batch 256, bf16); "
            "'resnets bench --device cpu --mode infer --compare torchvision,onnxruntime' (batch 1, fp32). "
            "Models torchvision does not have (e.g. resnet20) skip the torchvision peers."
        ),
    )
    p.add_argument("--model", default="resnet50", help="model name or spec (default: resnet50)")
    p.add_argument(
        "--mode", choices=["train", "infer"], default="train", help="time SGD steps or forward passes"
    )
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, help="default: 256 on CUDA; on CPU 1 (infer) or 8 (train)")
    p.add_argument("--input-size", type=int, help="square input side in pixels (default: the model's own)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument(
        "--compare",
        default="torchvision",
        help="comma-separated peers: torchvision, torchvision-compile, onnxruntime (CPU inference); '' for none",
    )
    p.add_argument("--steps", type=int, default=30, help="timed steps (default: 30)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default: 10)")
    p.add_argument("--repeats", type=int, default=5, help="timed chunks; the median is reported (default: 5)")
    p.add_argument(
        "--compile-mode",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode for our model (default: optimize's choice per device and mode)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile our model (default: on for CUDA and for CPU inference; compile time is reported apart)",
    )
    p.add_argument(
        "--no-cuda-graph", action="store_true", help="do not capture our training step as a CUDA graph"
    )
    p.add_argument(
        "--checkpoint-activations",
        action="store_true",
        help="recompute each block's activations in backward: about half the memory or less, ~1/3 more compute",
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: torch's)")
    p.add_argument("--json", action="store_true", help="print JSON (keys ours_img_s, ratio_vs_<peer>)")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from resnets import bench

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = bench.default_settings(
        model=args.model,
        mode=args.mode,
        device=args.device,
        batch_size=args.batch_size,
        precision=args.precision,
        input_size=args.input_size,
        compare=bench.peer_names(args.compare),
        steps=args.steps,
        warmup=args.warmup,
        repeats=args.repeats,
        compile=args.compile,
        compile_mode=args.compile_mode,
        cuda_graph=not args.no_cuda_graph,
        checkpoint_activations=args.checkpoint_activations,
    )
    bars: list[tqdm] = []

    def on_step(peer: str):
        if bars:
            bars[-1].close()
        bars.append(
            tqdm(total=bench.steps_total(settings), desc=peer, unit="step", file=sys.stderr, leave=False)
        )
        return bars[-1].update

    try:
        report = bench.run_bench(settings, on_step=on_step)
    finally:
        for bar in bars:
            bar.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.format_table())
    return 0


# --- resnets export -------------------------------------------------------------------------


def add_export(sub: argparse._SubParsersAction) -> None:
    from resnets.export import FORMATS

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
    from resnets.export import check_options, check_writable, default_out, export, load_source

    check_options(args.format, opset=args.opset, fold_bn=args.fold_bn, precision=args.precision)
    if args.out is not None:
        check_writable(args.out)
    model, meta, weights = load_source(args.source)
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


# --- resnets convert ------------------------------------------------------------------------


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="turn torchvision/timm/CIFAR weights into our .safetensors with class names and preprocessing",
        description=(
            "Read SRC (a .pth/.pt/.th/.tar state dict or training checkpoint from torchvision, timm, "
            "Lightning, DDP or the CIFAR reproduction, or any .safetensors), map its keys onto "
            "--model, check every shape and that every value is finite, and write our safetensors "
            "format with the metadata predict/eval/export need: model spec, class names, mean/std, "
            "input and resize size. Pickles are read with torch.load(weights_only=True) only: a "
            "file that needs anything but tensors is refused."
        ),
        epilog=(
            "examples:\n"
            "  resnets convert resnet50-11ad3fa6.pth --model resnet50 --out resnet50.safetensors\n"
            "  resnets convert resnet20-12fca82f.th --model resnet20 --out resnet20.safetensors\n"
            "  resnets convert ft.pth --model resnet18 --num-classes 37 --classes pets.txt --out pets.safetensors\n"
            "1000-class ImageNet nets get the bundled ImageNet class names and torchvision's eval "
            "preprocessing (resize 256, crop 224); 10-class CIFAR nets get CIFAR-10's."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SRC", help="the weights file to convert")
    p.add_argument("--model", help="the network SRC holds (required unless SRC is one of our files)")
    p.add_argument("--out", required=True, help="the .safetensors file to write (atomically)")
    p.add_argument("--classes", metavar="FILE", help="class names, one per line, in label order")
    p.add_argument("--input-size", type=int, help="centre-crop size to record (default: 224, CIFAR 32)")
    p.add_argument(
        "--resize-size",
        type=int,
        help="shorter side before the crop to record (default: 256 for ImageNet nets)",
    )
    p.add_argument(
        "--reset-head",
        action="store_true",
        help="keep a fresh classifier when SRC's has another size than --num-classes",
    )
    p.add_argument("--json", action="store_true", help="print the written metadata as JSON")
    add_model_options(p)
    p.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from resnets.convert import convert_weights
    from resnets.known_meta import read_class_names

    classes = read_class_names(args.classes) if args.classes else None
    out, meta = convert_weights(
        args.source,
        args.out,
        args.model,
        classes=classes,
        input_size=args.input_size,
        resize_size=args.resize_size,
        reset_head=args.reset_head,
        **model_overrides(args),
    )
    if args.json:
        from dataclasses import asdict

        print_json({"out": str(out), **{k: v for k, v in asdict(meta).items() if v is not None}})
        return 0
    names = f"{len(meta.classes)} class names" if meta.classes else "no class names (pass --classes FILE)"
    print(f"wrote {out}: {meta.model}, {names}, input {meta.input_size}, mean {meta.mean}, std {meta.std}")
    return 0


# --- resnets predict ------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify image files and folders with a trained run or weights file",
        description=(
            "Classify images with the network in WEIGHTS_OR_RUN, preprocessed as its metadata says "
            "(resize, centre crop, grayscale for one-channel networks, mean/std). Reads JPEG, PNG, "
            "WebP, BMP, TIFF and GIF in any mode (grayscale, palette, RGBA, CMYK, 16-bit) and honours "
            "EXIF orientation. Folders are walked recursively (sorted, hidden files skipped) and "
            "classified in batches. Prints a table of the top-k classes with their probabilities, "
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
    p.add_argument("--topk", type=positive_int, default=5, help="classes to show per image (default: 5)")
    p.add_argument(
        "--batch-size", type=positive_int, default=32, help="images per forward pass (default: 32)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the network (default: on for CUDA, off for CPU)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object per line: {"file", "topk": [{"class", "probability"}]} or {"file", "error"}',
    )
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    import warnings

    from tqdm import tqdm

    from resnets.errors import InputError
    from resnets.infer import Classifier, format_result, image_files

    # PIL warns (several lines, no file name) about recoverable damage such as corrupt EXIF; the
    # image still decodes, and a file that does not is reported below in one line.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    files = image_files(args.paths)
    if not files:
        raise InputError(f"no image files in {', '.join(args.paths)}")
    classifier = Classifier(
        args.weights, device=args.device, batch_size=args.batch_size, compile=args.compile
    )
    width = max(len(str(f)) for f in files)
    label_width = min(30, max(len(c) for c in classifier.classes))
    failed = 0
    with tqdm(total=len(files), unit="img", file=sys.stderr, disable=None, leave=False) as bar:
        if not args.json:
            tqdm.write(f"{'file':<{width}}  top-{args.topk} classes", file=sys.stdout)
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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_list,
    add_summary,
    add_train,
    add_eval,
    add_bench,
    add_predict,
    add_export,
    add_convert,
]


def build_parser() -> argparse.ArgumentParser:
    from resnets import __version__

    parser = OneLineParser(
        prog="resnets",
        description=(
            "The ResNet family of He et al. 2015, exact: build and inspect any variant, train, "
            "evaluate, predict, export and benchmark."
        ),
        epilog="Run 'resnets COMMAND --help' for the flags of each command.",
    )
    parser.add_argument("--version", action="version", version=f"resnets {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for relaunching (train --nproc-per-node)
    try:
        return int(args.func(args) or 0)
    except ResNetsError as exc:
        print(f"resnets {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"resnets {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"resnets {args.command}: interrupted", file=sys.stderr)
        return 130


def _os_error_text(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
