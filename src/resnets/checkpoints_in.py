"""Reading PyTorch checkpoint files from anywhere (.pth, .pt, .th, .tar, .bin, .ckpt), safely.

A `.pth` file is a pickle, and unpickling can run any code the file's author chose. We read
these files only with `torch.load(weights_only=True)`, whose unpickler accepts tensors and plain
containers and refuses every other global; there is no fallback to the unsafe loader. A file
that needs other globals is refused with the list of them, so the user knows what it contains.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from resnets.errors import WeightsError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


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
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = unsafe_globals(path, exc)
        if unsafe:
            raise WeightsError(
                f"{path}: refused: loading it would need the unsafe pickled global(s) "
                f"{', '.join(unsafe)}, which can run arbitrary code; only tensors and plain "
                "containers are accepted (save a state_dict, or use safetensors)"
            ) from None
        raise WeightsError(f"{path}: not a PyTorch checkpoint (unreadable pickle)") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({_short(exc)})") from None


def unsafe_globals(path: Path, exc: BaseException) -> list[str]:
    """Every global the weights-only unpickler would have to allow to read `path`.

    `torch.serialization.get_unsafe_globals_in_checkpoint` lists them all for zip checkpoints
    (torch >= 2.5); for legacy pickles, and where it is missing, the error names the first one.
    """
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is not None:
        try:
            found = finder(path)
        except Exception:  # a legacy or damaged file: fall back to the error message
            found = []
        if found:
            return sorted(set(found))
    return sorted(set(_GLOBAL.findall(str(exc))))


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    first = first.split(". ")[0]  # torch's messages go on for several sentences
    return first[:160]
