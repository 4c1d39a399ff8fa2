"""ImageFolder datasets: ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg, or one folder split.

Problems a user can fix are found before training starts, with the path in the message: no
class folders, an empty class, a hidden folder (`.ipynb_checkpoints`) that would silently become
a class. Class folders are listed by the one tree walker (walk.py) that `resnets predict` uses:
the same image extensions, each real file once, no link loops; what it passes over is kept in
`ImageData.passed_over`. Images that fail to decode during training are skipped and reported by
name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from resnets.data.datasets import ImageData, Split
from resnets.data.device_decode import device_ready_jpeg
from resnets.data.images import IMAGE_EXTENSIONS, open_rgb
from resnets.data.split import Earlier, check_val_split, split_files
from resnets.data.transforms import eval_resize
from resnets.data.walk import HIDDEN, ImageWalker, Skipped, describe_skipped
from resnets.errors import DataError
from resnets.preprocess import Preprocess, eval_transform

VAL_NAMES = ("val", "validation", "test")
STATS_SAMPLE = 256


def find_classes(root: Path, walker: ImageWalker | None = None) -> list[str]:
    """Sorted class folder names of `root`. Hidden folders (`.cache`, `.ipynb_checkpoints`) are
    passed over as every walk passes them over, and recorded in `walker.skipped` when given.

    Raises DataError for a path that is not a folder, or one without class folders."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    folders = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if walker is not None:
        walker.skipped += [Skipped(root / f, HIDDEN) for f in folders if f.startswith(".")]
    folders = [f for f in folders if not f.startswith(".")]
    if not folders:
        raise DataError(f"{root}: no class folders (expected {root}/<class name>/<images>)")
    return folders


def list_images(
    root: Path, classes: list[str], walker: ImageWalker | None = None
) -> tuple[list[str], list[int]]:
    """Every image file under each class folder, with its class index, in walk order (walk.py:
    recursive, sorted, hidden files and folders passed over, each real file once). Pass one
    `walker` for several roots to keep them from sharing a file; it collects what was skipped.

    Raises DataError naming a class folder with no images.
    """
    walker = walker or ImageWalker()
    walker.reserve([root / name for name in classes])  # a link into another class is not followed
    files: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = walker.walk(root / name, ancestors=[root])
        if not found:
            raise DataError(
                f"{root / name}: class '{name}' has no images ({', '.join(IMAGE_EXTENSIONS[:4])}, ...)"
            )
        files.extend(map(str, found))
        labels.extend([index] * len(found))
    return files, labels


def load_folder(
    root: Path,
    *,
    input_size: int,
    val_split: float | None = None,
    split_seed: int = 0,
    earlier: Earlier | None = None,
) -> ImageData:
    """An ImageFolder root with train/ and val/ (val/ may lack classes, never add them), or one
    folder of class folders split by `val_split` (split.py: stratified, classes of one image kept
    in training). A run's `earlier` split (its split.json) is re-applied by file name; a folder
    whose files changed since is refused, naming how many were added and removed, unless accepted.

    Raises DataError for a folder that cannot be trained on (no classes, an empty class, no
    validation part, a bad `val_split`)."""
    check_val_split(val_split)
    train_root = root / "train" if (root / "train").is_dir() else root
    val_root = (
        next((root / n for n in VAL_NAMES if (root / n).is_dir()), None) if train_root != root else None
    )
    walker = ImageWalker()  # one for both splits: a file linked into val and train counts once
    classes = find_classes(train_root, walker)
    files, labels = list_images(train_root, classes, walker)
    val_files: list[str] = []
    val_labels: torch.Tensor | None = None
    if not val_split:
        if val_root is None:
            zero = "--val-split 0 holds out nothing, and " if val_split == 0 else ""
            raise DataError(
                f"{zero}{root}: no validation data; add {root}/val/<class>/... next to train/, or pass "
                "--val-split 0.1"
            )
        val_classes = find_classes(val_root, walker)
        extra = sorted(set(val_classes) - set(classes))
        if extra:
            raise DataError(f"{val_root}: class(es) {', '.join(extra)} are not in {train_root}")
        val_files, val_index = list_images(val_root, val_classes, walker)
        remap = [classes.index(c) for c in val_classes]
        val_labels = torch.as_tensor([remap[i] for i in val_index], dtype=torch.int64)
    label_tensor = torch.as_tensor(labels, dtype=torch.int64)
    train_pos, val_pos, record, messages = split_files(
        root,
        files,
        label_tensor,
        classes,
        val_split,
        split_seed,
        val_files=val_files,
        val_labels=val_labels,
        earlier=earlier,
    )
    everything = [*files, *val_files]
    every_label = torch.cat([label_tensor, val_labels]) if val_labels is not None else label_tensor
    train = Split(labels=every_label[train_pos], files=[everything[i] for i in train_pos])
    val = Split(labels=every_label[val_pos], files=[everything[i] for i in val_pos])
    if len(train) == 0 or len(val) == 0:
        raise DataError(f"{root}: {len(train)} training and {len(val)} validation images; both need some")
    resize = eval_resize(input_size)
    mean, std = estimate_stats(train.files, input_size, resize)
    return ImageData(
        name=root.resolve().name,
        classes=classes,
        train=train,
        val=val,
        mean=mean,
        std=std,
        input_size=input_size,
        resize_size=resize,
        notes={"color": "RGB", "source": str(root)},
        passed_over=walker.skipped,
        split=record,
        messages=[
            *messages,
            *([f"{root}: passed over {describe_skipped(walker.skipped)}"] if walker.skipped else []),
        ],
    )


def load_test_folder(root: Path, preprocess: Preprocess) -> ImageData:
    """Every image under a folder of class folders, to evaluate on: ROOT/<class>/..., or its
    val/ (validation/, test/) part when ROOT is a train/val layout. No split, no statistics: the
    weights' `preprocess` says how to read them (its input size and normalisation).

    Raises DataError for a folder without class folders or with an empty class."""
    part = next((root / n for n in VAL_NAMES if (root / n).is_dir()), None)
    if part is None and (root / "train").is_dir():
        raise DataError(f"{root}: has train/ but no val/ (validation/, test/) folder to evaluate on")
    folder = part or root
    walker = ImageWalker()
    classes = find_classes(folder, walker)
    files, labels = list_images(folder, classes, walker)
    height, width = preprocess.input_size
    channels = len(preprocess.mean) if preprocess.mean is not None else 3
    return ImageData(
        name=f"{root.resolve().name}" + (f"/{folder.name}" if part is not None else ""),
        classes=classes,
        train=Split(labels=torch.empty(0, dtype=torch.int64), files=[]),
        val=Split(labels=torch.as_tensor(labels, dtype=torch.int64), files=files),
        mean=preprocess.mean or (0.0,) * channels,
        std=preprocess.std or (1.0,) * channels,
        input_size=height,
        resize_size=preprocess.resize_size,
        notes={"color": preprocess.color, "source": str(folder)},
        passed_over=walker.skipped,
    )


def estimate_stats(files: list[str], size: int, resize: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of up to STATS_SAMPLE training images (a fixed sample), as evaluated."""
    x = sample_images(files, size, resize).transpose(0, 1).reshape(3, -1).double()
    return tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-3).tolist())


def sample_images(files: list[str], size: int, resize: int | None) -> torch.Tensor:
    """Up to STATS_SAMPLE of `files` (a fixed sample) as evaluated, (N, 3, size, size) on the 0..1
    scale: what the statistics of a folder are estimated from. Raises DataError if none reads."""
    fitted = eval_transform(Preprocess((size, size), resize_size=resize), normalize=False)

    def transform(image):
        return fitted(image).float().div_(255)

    pick = np.random.default_rng(0).permutation(len(files))[:STATS_SAMPLE]
    batch = []
    for i in sorted(pick.tolist()):
        try:
            batch.append(transform(open_rgb(files[i])))
        except DataError:
            continue
    if not batch:
        raise DataError(f"none of {len(pick)} sampled training images could be read (e.g. {files[0]})")
    return torch.stack(batch)


class FolderDataset(torch.utils.data.Dataset):
    """Decodes one file per item; an unreadable file yields (None, label, path) to be skipped.

    With `encoded`, a JPEG the device decoder can take is returned undecoded (an EncodedJpeg,
    see device_decode.py) for the main process to decode on the device.
    """

    def __init__(self, files: list[str], labels: torch.Tensor, transform, encoded: bool = False) -> None:
        self.files, self.labels, self.transform = files, labels.tolist(), transform
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        if self.encoded:
            raw = device_ready_jpeg(self.files[i])
            if raw is not None:
                return raw, self.labels[i], None
        try:
            return self.transform(open_rgb(self.files[i])), self.labels[i], None
        except DataError:  # images.ImageFileError: unreadable, truncated or a bomb
            return None, self.labels[i], self.files[i]


def collate_skipping(items):
    """Stack the readable images; return the unreadable ones' paths alongside. A batch holding
    undecoded JPEGs stays a list, for device_decode.decode_batch."""
    good = [(x, y) for x, y, bad in items if bad is None]
    skipped = [bad for _, _, bad in items if bad is not None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.int64), skipped
    labels = torch.as_tensor([y for _, y in good])
    if any(not isinstance(x, torch.Tensor) for x, _ in good):
        return [x for x, _ in good], labels, skipped
    return torch.stack([x for x, _ in good]), labels, skipped
