"""Reading PyTorch checkpoint files from anywhere (.pth, .pt, .th, .tar, .bin, .ckpt), safely.

A `.pth` file is a pickle, and unpickling can run any code the file's author chose. We read
these files only with `torch.load(weights_only=True)`, whose unpickler accepts tensors and plain
containers and refuses every other global; there is no fallback to the unsafe loader.

Real training checkpoints carry a little more than tensors: timm's CheckpointSaver and
torchvision's reference train.py save their `argparse.Namespace` of settings, and metrics are
often numpy scalars. `INERT_GLOBALS` admits exactly those types through the weights-only
unpickler (`torch.serialization.safe_globals`): a Namespace only stores attributes, a numpy scalar
is rebuilt from a dtype and raw bytes, and a dtype of a numeric kind holds no object. Nothing that
calls code of the file's choosing is among them (no object dtype, no numpy array reconstruction,
no `__main__` class). A file that needs any other global is refused with the list of them, so the
user knows what it contains.
"""

from __future__ import annotations

import argparse
import os
import pickle
import pickletools
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnets.errors import WeightsError
from resnets.text import first_line, shorten

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
# numpy's numeric dtype classes: what a pickled numpy scalar's dtype is built as (numpy >= 1.25).
_NUMERIC_DTYPES = [
    "BoolDType",
    *(f"{kind}{bits}DType" for kind in ("Int", "UInt") for bits in (8, 16, 32, 64)),
    "Float16DType",
    "Float32DType",
    "Float64DType",
    "LongDoubleDType",
    "Complex64DType",
    "Complex128DType",
    "CLongDoubleDType",
]


def _inert_globals() -> list[Any]:
    """argparse.Namespace, numpy's scalar reconstructor (under its numpy 2 and numpy 1 module
    paths: files keep the path of the numpy that wrote them), numpy.dtype and the numeric dtype
    classes."""
    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed: list[Any] = [
        argparse.Namespace,
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)
    allowed += [getattr(dtypes, name) for name in _NUMERIC_DTYPES if hasattr(dtypes, name)]
    return allowed


INERT_GLOBALS = _inert_globals()
_INERT_NAMES = {
    "argparse.Namespace",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray.scalar",
    "numpy.dtype",
    *(f"numpy.dtypes.{name}" for name in _NUMERIC_DTYPES),
}


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object a `torch.save` file holds, read with the weights-only unpickler, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise on top of the error we raise ourselves
            warnings.simplefilter("ignore")
            with torch.serialization.safe_globals(INERT_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = unsafe_globals(path, exc)
        if unsafe:
            raise WeightsError(
                f"{path}: refused: it holds pickled {shorten(unsafe)}, which we do not unpickle "
                "(unpickling calls whatever the file names); we read tensors, plain containers, "
                "argparse.Namespace and numpy scalars (save a state_dict, or use safetensors)"
            ) from None
        raise WeightsError(f"{path}: not a PyTorch checkpoint (unreadable pickle)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails anywhere in torch's reader
        # KeyError, IndexError, struct.error, AssertionError...: whatever the bytes make torch's
        # zip and pickle readers trip on, it is one fact about the file.
        # torch's messages go on for several sentences: the first says what went wrong.
        reason = first_line(exc).split(". ")[0][:160]
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def unsafe_globals(path: Path, exc: BaseException) -> list[str]:
    """Every global the weights-only unpickler would have to allow to read `path`.

    `torch.serialization.get_unsafe_globals_in_checkpoint` lists them all for zip checkpoints
    (torch >= 2.5); for legacy pickles, and where it is missing, the error names the first one;
    failing that, the pickle's opcodes are read (never executed) for the globals they name.
    """
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is not None:
        try:
            found = finder(path)
        except Exception:  # a legacy or damaged file: fall back to the error message
            found = []
        found = [name for name in found if name not in _INERT_NAMES]
        if found:
            return sorted(set(found))
    named = [name for name in _GLOBAL.findall(str(exc)) if name not in _INERT_NAMES]
    return sorted(set(named)) or _disallowed(_pickle_globals(path))


def _pickle_globals(path: Path) -> list[str]:
    """The globals named by the pickles at the start of `path`, read by pickletools opcode by
    opcode: nothing is constructed or run. STACK_GLOBAL takes the two strings pushed before it."""
    found: list[str] = []
    strings: list[str] = []
    with open(path, "rb") as f:
        try:
            while True:  # legacy torch files are several pickles in a row, then raw storage bytes
                for op, arg, _ in pickletools.genops(f):
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        found.append(arg.replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif "UNICODE" in op.name and isinstance(arg, str):
                        strings.append(arg)
        except Exception:  # the end of the pickles: garbage, EOF or raw tensor data
            pass
    return found


def _disallowed(names: list[str]) -> list[str]:
    """`names` less those the weights-only unpickler accepts (tensors, storages, plain containers)."""
    allowed_fn = getattr(torch._weights_only_unpickler, "_get_allowed_globals", None)
    if allowed_fn is None:  # private API: without it, keep all but torch's own rebuild helpers
        return sorted(
            {
                n
                for n in names
                if not n.startswith(("torch.", "collections.OrderedDict")) and n not in _INERT_NAMES
            }
        )
    allowed = set(allowed_fn()) | _INERT_NAMES
    return sorted({n for n in names if n not in allowed})
