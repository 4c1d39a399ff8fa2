"""Write files so that a crash never leaves one half-written: temp file in the same folder,
fsync, rename over the target (atomic on POSIX and Windows), fsync the folder.

The file's fsync makes its bytes durable before the rename publishes it; the folder's fsync makes
the rename itself durable, so after a power cut the name points at the old or the new file,
never at an empty one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The hidden temporary name `path` is written under before its rename."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames and deletions in `folder` durable (a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then fsync and rename `tmp_path` to `path`, then fsync the folder."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temps(folder: Path) -> None:
    """Delete temporary files a killed writer left in `folder`."""
    for leftover in folder.glob(f".*{TMP_MARK}*"):
        leftover.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")
