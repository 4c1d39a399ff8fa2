"""`resnets reproduce EXPERIMENT`: one of the paper's CIFAR-10 experiments, trained and reported."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from resnets.cli.common import positive_int, print_json
from resnets.reproduce import EXPERIMENTS, SCALES, Event, reproduce
from resnets.reproduce.pipeline import default_data, default_scale
from resnets.reproduce.plan import default_out, network_label
from resnets.train.logging import format_duration


def add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run one of the paper's CIFAR-10 experiments (Table 6, Fig. 1, 6, 7) and report it next to the paper's",
        description=(
            "Train what one of the paper's CIFAR-10 experiments needs with its recipe (sec. 4.2: "
            "SGD, lr 0.1 divided by 10 at 32k and 48k of 64k iterations, batch 128, weight decay "
            "1e-4, momentum 0.9, per-pixel mean, pad-and-crop + flips, the ResNet-110 warm-up; "
            "trained on all training images and tested on the test images, as the reported "
            "numbers were), and write a report: markdown, CSV and PNG, our numbers next to the "
            "paper's. Runs go to OUT/runs/<network>-seed<k>; a finished run found there is "
            "reused and an interrupted one resumed, so experiments share their runs (fig7 after "
            "fig6 trains nothing)."
        ),
        epilog=(
            "experiments:\n"
            + "".join(f"  {e.name:<7} {e.title}\n" for e in EXPERIMENTS.values())
            + "scales:\n"
            "  smoke   256 iterations of 32 images at lr 0.025 (the images of 1/1000 of the paper's\n"
            "          training; the lr scaled with the batch), /10 at 128 and 192, at most 2,500\n"
            "          training and 1,000 test images: minutes on a CPU; the default without a GPU\n"
            "  paper   the paper's 64k iterations, on all the data: the default on a GPU\n"
            "examples:\n"
            "  resnets reproduce table6                      # smoke scale on the bundled digits\n"
            "  resnets reproduce fig6 --depths 20,56\n"
            "  resnets reproduce fig7                        # after fig6: trains nothing\n"
            "  resnets reproduce table6 --scale paper --data cifar10 --download --seeds 5 --device cuda\n"
            "  resnets reproduce fig1 --data ~/cifar10-jpg   # an ImageFolder: train/<class>, test/<class>\n"
            "see docs/reproduction.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", choices=list(EXPERIMENTS), help="which experiment")
    p.add_argument(
        "--data",
        help="digits (bundled), cifar10 (a CIFAR python folder in --data-dir), or a folder: an "
        "ImageFolder with train/<class> and test/<class>, or a CIFAR python folder "
        "(default: digits for smoke, cifar10 for paper)",
    )
    p.add_argument(
        "--data-dir", default="data", help="where cifar10 is found or downloaded to (default: data)"
    )
    p.add_argument("--download", action="store_true", help="download cifar10 into --data-dir if missing")
    p.add_argument(
        "--scale", choices=list(SCALES), help="smoke or paper (default: paper on a GPU, smoke otherwise)"
    )
    p.add_argument(
        "--seeds", type=positive_int, default=1, help="runs per network, seeds 0..N-1 (default: 1)"
    )
    p.add_argument(
        "--depths",
        type=_depths,
        metavar="D,D,...",
        help="depths instead of the experiment's own, for each of its families (e.g. 20,32,44,56,110; 1202 for ResNets)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device (default: auto)")
    p.add_argument(
        "--iterations",
        type=positive_int,
        metavar="N",
        help="shorten the scale's schedule to N iterations (milestones at the same fractions): a quick look",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads for torch (default: torch's; 1 can be much faster on a machine busy with other work)",
    )
    p.add_argument("--out", help="folder of the runs and reports (default: reproduction/<data>-<scale>)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (progress goes to stderr)")
    p.set_defaults(func=run_reproduce)


def _depths(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(d) for d in text.replace(" ", "").split(",") if d)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated depths such as 20,56, got {text!r}"
        ) from None
    if not depths:
        raise argparse.ArgumentTypeError("expected at least one depth")
    return depths


class Progress:
    """Prints the plan, the expected time and one line per run as the reproduction goes."""

    def __init__(self, stream: TextIO, out: str) -> None:
        self.stream, self.out = stream, out
        self.start = time.perf_counter()
        self.expected = 0.0

    def __call__(self, event: Event) -> None:
        if event.kind == "plan":
            self.expected = event.estimate.seconds if event.estimate else 0.0
            self.say(f"{event.total} run(s) into {self.out}/runs: {event.reused} finished already (reused)")
            if event.estimate and event.estimate.runs:
                e = event.estimate
                self.say(
                    f"expected time: about {format_duration(e.seconds)} on {e.device} ({e.runs} run(s) "
                    f"to train, {e.steps:,} steps; {e.step_seconds:.3f} s per {network_label(e.probe)} "
                    "step measured here)"
                )
        elif event.kind == "start" and event.run is not None:
            how = f"resuming at step {event.run.steps_done}" if event.run.steps_done else "training"
            self.say(f"[{event.index}/{event.total}] {self.name(event)}: {how} ...")
        elif event.kind == "done" and event.run is not None:
            error = "" if event.test_error is None else f", test error {100 * event.test_error:.2f}%"
            if event.reused:
                self.say(f"[{event.index}/{event.total}] {self.name(event)}: finished run reused{error}")
            else:
                elapsed = time.perf_counter() - self.start
                self.say(
                    f"[{event.index}/{event.total}] {self.name(event)}: trained in "
                    f"{format_duration(event.seconds)}{error} (elapsed {format_duration(elapsed)} of "
                    f"about {format_duration(self.expected)} expected)"
                )
        elif event.kind == "measure":
            self.say(f"measuring the layer responses of {event.label} ...")

    @staticmethod
    def name(event: Event) -> str:
        assert event.run is not None
        return f"{network_label(event.run.model)} seed {event.run.seed}"

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def run_reproduce(args: argparse.Namespace) -> int:
    """Reproduce the experiment, printing progress; then the report's files and findings."""
    scale = args.scale or default_scale(args.device)
    data = args.data or default_data(scale)
    out = args.out or str(default_out(data, scale))
    stream = sys.stderr if args.json else sys.stdout
    print(f"{args.experiment}: {EXPERIMENTS[args.experiment].title}; {scale} scale on {data}", file=stream)
    report = reproduce(
        args.experiment,
        data=data,
        scale=scale,
        seeds=args.seeds,
        depths=args.depths,
        device=args.device,
        out=out,
        data_dir=args.data_dir,
        download=args.download,
        iterations=args.iterations,
        threads=args.threads,
        console=True,
        on_event=Progress(stream, out),
    )
    if args.json:
        print_json(report.to_dict())
        return 0
    print(
        f"report: {report.files['markdown']} (with {', '.join(p.name for k, p in report.files.items() if k != 'markdown')})"
    )
    for finding in report.findings:
        print(f"  {finding}")
    return 0
