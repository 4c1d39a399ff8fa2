"""The `resnets` command: parse, call the API, print.

Each subcommand is a module of this package with an `add_<name>` function that declares its
flags and a `run_<name>` that does the work through the public API. Errors the user can cause (ResNetsError, missing or
unreadable files) become one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from resnets.cli.analyze import add_analyze
from resnets.cli.bench import add_bench
from resnets.cli.common import EXIT_USAGE, OneLineParser
from resnets.cli.convert import add_convert
from resnets.cli.eval import add_eval
from resnets.cli.export import add_export
from resnets.cli.inspect import add_list, add_summary
from resnets.cli.predict import add_predict
from resnets.cli.reproduce import add_reproduce
from resnets.cli.train import add_train
from resnets.errors import ResNetsError
from resnets.version import __version__

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_list,
    add_summary,
    add_train,
    add_eval,
    add_bench,
    add_predict,
    add_export,
    add_convert,
    add_reproduce,
    add_analyze,
]


def build_parser() -> argparse.ArgumentParser:

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
