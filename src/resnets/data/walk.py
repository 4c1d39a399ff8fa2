"""The one walk over folders of images, for training folders and `resnets predict` alike.

What counts as an image file is `images.is_image_file` (one list of extensions, GIF included,
for both). A folder is walked in a fixed order: its files sorted by name, then its sub-folders
sorted by name, each the same way (os.walk's top-down order). Hidden files and folders (a leading
dot: `.DS_Store`, `.ipynb_checkpoints`, `.git`) are passed over. Links are followed, but each
real file is listed once and each real folder walked once, so a link back to a parent cannot
loop and a file linked twice (or reached from two roots of the same walk) is not counted twice.
Whatever is passed over is kept with the reason, so callers can say so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resnets.data.images import is_image_file
from resnets.text import shorten

HIDDEN = "hidden"
NOT_AN_IMAGE = "not an image"
BROKEN_LINK = "broken link"
DUPLICATE = "duplicate"  # a real file already listed, reached again through a link or another root
LINK_LOOP = "link loop"  # a link to a folder that contains it: following it would never end
FOLDER_SEEN = "folder already walked"  # a link to a folder walked before, elsewhere
UNREADABLE = "unreadable folder"  # a sub-folder we may not list (permissions)
REASONS = (HIDDEN, NOT_AN_IMAGE, BROKEN_LINK, DUPLICATE, LINK_LOOP, FOLDER_SEEN, UNREADABLE)


@dataclass(frozen=True)
class Skipped:
    """A file or folder the walk passed over, as the walk reached it, and why (one of REASONS)."""

    path: Path
    reason: str


class ImageWalker:
    """Lists image files under folders; remembers every real file and folder it has seen, across
    calls, so that several roots walked by one walker share no file.

    >>> walker = ImageWalker()
    >>> files = walker.walk("photos")          # [Path('photos/a.jpg'), Path('photos/sub/b.png')]
    >>> walker.skipped                         # [Skipped(Path('photos/.DS_Store'), 'hidden'), ...]
    """

    def __init__(self) -> None:
        self.skipped: list[Skipped] = []
        self._files: set[str] = set()
        self._folders: set[str] = set()
        self._reserved: set[str] = set()

    def reserve(self, folders: Sequence[str | os.PathLike]) -> None:
        """Folders that are walked as roots of their own later (a dataset's class folders): a link
        to one of them from another root is passed over (FOLDER_SEEN), whatever the walk order, so
        one class's images never come in under another class."""
        self._reserved.update(os.path.realpath(folder) for folder in folders)

    def walk(self, root: str | os.PathLike, ancestors: Sequence[str | os.PathLike] = ()) -> list[Path]:
        """The image files under the folder `root`, in walk order, as paths under `root` (links
        are not resolved in what is returned); a link to `root` or to one of `ancestors` (e.g. the
        dataset folder above a class folder) is a LINK_LOOP. Raises OSError if `root` cannot be
        listed."""
        root = Path(root)
        found: list[Path] = []
        real = os.path.realpath(root)
        if real in self._folders:
            self.skipped.append(Skipped(root, FOLDER_SEEN))
            return found
        self._folders.add(real)
        self._reserved.discard(real)
        # Depth first, pre-order, without recursion: (folder, real paths of it and its parents).
        above = frozenset(os.path.realpath(folder) for folder in ancestors)
        stack: list[tuple[Path, frozenset[str]]] = [(root, above | {real})]
        while stack:
            folder, parents = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                if folder == root:
                    raise
                self.skipped.append(Skipped(folder, UNREADABLE))
                continue
            subfolders = []
            for entry in entries:
                path = Path(folder, entry.name)
                if entry.name.startswith("."):
                    self.skipped.append(Skipped(path, HIDDEN))
                elif _is_dir(entry):
                    subfolders.append(path)
                else:
                    self._add_file(path, found, named=False)
            for path in reversed(subfolders):  # the stack pops them in sorted order
                real = os.path.realpath(path)
                if real in parents:
                    self.skipped.append(Skipped(path, LINK_LOOP))
                elif real in self._folders or real in self._reserved:
                    self.skipped.append(Skipped(path, FOLDER_SEEN))
                else:
                    self._folders.add(real)
                    stack.append((path, parents | {real}))
        return found

    def _in_reserved(self, real: str) -> bool:
        """Whether the real path `real` lies inside a reserved folder not walked yet."""
        return any(real.startswith(folder + os.sep) for folder in self._reserved)

    def file(self, path: str | os.PathLike) -> list[Path]:
        """A file named by the user: listed whatever its extension (it is tried as an image), unless
        it is a real file already listed. Returns [path] or []."""
        found: list[Path] = []
        self._add_file(Path(path), found, named=True)
        return found

    def _add_file(self, path: Path, found: list[Path], *, named: bool) -> None:
        if not named and not is_image_file(path):
            self.skipped.append(Skipped(path, NOT_AN_IMAGE))
            return
        if path.is_symlink() and not path.exists():
            self.skipped.append(Skipped(path, BROKEN_LINK))
            return
        real = os.path.realpath(path)
        if real in self._files or self._in_reserved(real):
            # listed already, or a link into a class folder still to come: the real file's own
            # folder (its class) counts it, whatever the walk order
            self.skipped.append(Skipped(path, DUPLICATE))
            return
        self._files.add(real)
        found.append(path)


def walk_images(root: str | os.PathLike) -> tuple[list[Path], list[Skipped]]:
    """The image files under `root` and what was passed over: one `ImageWalker().walk(root)`."""
    walker = ImageWalker()
    return walker.walk(root), walker.skipped


def describe_skipped(skipped: Sequence[Skipped], limit: int = 3) -> str:
    """One line grouping what a walk passed over by reason, e.g.
    "1 hidden (photos/.DS_Store); 2 not an image (photos/a.txt, photos/b.csv)"."""
    groups = []
    for reason in REASONS:
        paths = [s.path for s in skipped if s.reason == reason]
        if paths:
            groups.append(f"{len(paths)} {reason} ({shorten(paths, limit)})")
    return "; ".join(groups)


def _is_dir(entry: os.DirEntry) -> bool:
    """A folder, or a link to one (a link whose target is gone is not)."""
    try:
        return entry.is_dir()  # follows links
    except OSError:
        return False
