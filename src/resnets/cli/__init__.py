"""The `resnets` command: parse, call the API, print.

Each subcommand is a module of this package with an `add_<name>` function that declares its
flags and a `run_<name>` that does the work through the public API. Errors the user can cause (ResNetsError, missing or
unreadable files) become one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from resnets.cli.analyze import add_analyze
from resnets.cli.bench import add_bench
from resnets.cli.common import EXIT_USAGE, OneLineParser
from resnets.cli.convert import add_convert
from resnets.cli.eval import add_eval
from resnets.cli.explain import add_explain
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
    add_explain,
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


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a Unix tool killed by a closed pipe returns


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        reject_unknown(parser, args.command, unknown)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for relaunching (train --nproc-per-node)
    show_library_warnings(args.command)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, so a reader that went away (`| head`) is seen inside the try
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except ResNetsError as exc:
        print(f"resnets {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"resnets {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # a training run says where it stopped and how to go on
        detail = f": {exc}" if str(exc) else ""
        print(f"resnets {args.command}: interrupted{detail}", file=sys.stderr)
        return 130


def reject_unknown(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> None:
    """Exit with one line from the subcommand's own parser: the flags it does not know, and the
    nearest flag it does know (`--batch-sise` -> did you mean --batch-size?)."""
    sub = subcommand_parser(parser, command)
    known = {o[2:]: o for action in sub._actions for o in action.option_strings if o.startswith("--")}
    flags = [a.split("=", 1)[0] for a in unknown if a.startswith("--")]
    hints = {}
    for flag in flags:
        close = difflib.get_close_matches(flag[2:], list(known), n=1, cutoff=0.7)
        if close:
            hints[flag] = known[close[0]]
    message = f"unrecognized argument{'s' if len(unknown) > 1 else ''}: {' '.join(unknown)}"
    if len(flags) == 1 and hints:
        message += f"; did you mean {hints[flags[0]]}?"
    elif hints:
        message += "; did you mean " + ", ".join(f"{v} for {k}" for k, v in hints.items()) + "?"
    sub.error(message)


def subcommand_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of `resnets COMMAND`."""
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[command]


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (`resnets train --print-config | head`): stop quietly, as
    `cat` would. stdout is pointed at /dev/null so the interpreter's final flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced by something without a file descriptor
        pass
    return EXIT_BROKEN_PIPE


class _StderrLines(logging.Handler):
    """Each record as one line on the current sys.stderr (looked up per record, so output that
    is redirected after setup, as tests do, still receives it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


_HANDLER = _StderrLines(logging.WARNING)


def show_library_warnings(command: str) -> None:
    """What the library logs at WARNING and above (a fast path that falls back, say) reaches the
    user as one line, `resnets COMMAND: message`, like our errors."""
    _HANDLER.setFormatter(logging.Formatter(f"resnets {command}: %(message)s"))
    logger = logging.getLogger("resnets")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)


def _os_error_text(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"
