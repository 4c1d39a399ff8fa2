"""Keep third-party exporters' chatter off the user's terminal.

torch.onnx prints progress to stdout, its TorchScript-based exporter dumps the whole IR graph
from C++ (straight to file descriptor 2, past `sys.stderr`) before raising, onnxruntime's
quantization tool logs warnings through the root logger, and every one of them issues Python
warnings. Inside `silenced()` all of that goes to a temporary file that is thrown away: what went
wrong reaches the user as the one-line ExportError the caller raises from the exception.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout


@contextmanager
def silenced() -> Iterator[None]:
    """Swallow, for the duration, what is written to file descriptors 1 and 2 (C++ and Python
    alike) and to `sys.stdout`/`sys.stderr` (wherever they point), every logging record and every Python warning; restore all three afterwards, also on
    an exception. Where the descriptors cannot be duplicated (closed, as in some daemons), only
    logging and warnings are silenced."""
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        before = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        stack.callback(logging.disable, before)
        stack.enter_context(_descriptors_to_a_sink())
        python_sink = stack.enter_context(open(os.devnull, "w"))  # sys.stdout may not be fd 1
        stack.enter_context(redirect_stdout(python_sink))
        stack.enter_context(redirect_stderr(python_sink))
        yield


@contextmanager
def _descriptors_to_a_sink() -> Iterator[None]:
    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                _flush(stream)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _flush(stream: object) -> None:
    flush = getattr(stream, "flush", None)
    if flush is not None:
        try:
            flush()
        except (OSError, ValueError):
            pass
