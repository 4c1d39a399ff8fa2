"""CIFAR-10 / CIFAR-100 from their python folders, read without trusting pickle.

The "python version" of CIFAR is a set of pickles: dicts of strings, ints, lists and one numpy
uint8 array each. `SafeUnpickler` rebuilds exactly those types: it admits the numpy globals an
array's pickle names (`_reconstruct`, `ndarray`, `dtype`) and refuses every other global, so a
tampered file cannot run code. `--download` fetches the archive through torchvision's
downloader (checksum verified) and reads it the same way.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnets.data.datasets import ImageData, Split, channel_stats, subset
from resnets.data.split import Earlier, check_val_split, own_split, split_tensors
from resnets.errors import DataError

# name -> (its folder inside data_dir, the torchvision dataset class that knows its URL and checksum)
NAMED = {
    "cifar10": ("cifar-10-batches-py", "CIFAR10"),
    "cifar100": ("cifar-100-python", "CIFAR100"),
}
# Each layout: training files, test file, meta file, label key, class-names key.
CIFAR10_FILES = (
    [f"data_batch_{i}" for i in range(1, 6)],
    "test_batch",
    "batches.meta",
    "labels",
    "label_names",
)
CIFAR100_FILES = (["train"], "test", "meta", "fine_labels", "fine_label_names")

# The only globals a CIFAR pickle names: numpy's array reconstructor (under its numpy 1 and numpy 2
# module paths), the array type and the dtype. Anything else is refused.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


def _reconstruct_empty(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstructor, for the empty array a pickle starts from (its data follows in
    BUILD, bounded by the file's size): a tampered file cannot ask for a huge allocation here."""
    if subtype is not np.ndarray or not isinstance(shape, tuple) or int(np.prod(shape)) != 0:
        raise pickle.UnpicklingError("only empty numpy arrays are reconstructed")
    return _RECONSTRUCT(subtype, shape, dtype)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class SafeUnpickler(pickle._Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers and numpy arrays, and nothing else.

    It is the pure-Python unpickler: the C one sizes its memo table from the file's BINPUT
    indices, so a few corrupt bytes can make it allocate gigabytes; this one keeps a dict. The one
    opcode that allocates before reading (protocol 5's BYTEARRAY8) is refused: CIFAR is protocol 2.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def _refuse_bytearray8(self) -> None:
        raise pickle.UnpicklingError("BYTEARRAY8 is not part of the CIFAR format")

    dispatch[pickle.BYTEARRAY8[0]] = _refuse_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global '{module}.{name}' (not part of the CIFAR format)"
            ) from None


def safe_load(path: Path) -> Any:
    """Unpickle a CIFAR batch file with `SafeUnpickler` (latin1 maps Python 2 strings to str)."""
    try:
        data = path.read_bytes()
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        struct.error,
    ) as exc:
        raise DataError(f"{path}: not a readable CIFAR batch ({exc})") from None


def find_cifar_root(path: Path) -> Path | None:
    """`path` itself or its cifar-10-batches-py / cifar-100-python child, if it holds CIFAR files."""
    for candidate in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
        if _layout(candidate) is not None:
            return candidate
    return None


def check_complete(root: Path) -> None:
    """Raise DataError if `root` holds some of a CIFAR folder's files but not all of them (a
    half-copied or half-extracted download), naming what is missing."""
    for name, layout in (("CIFAR-10", CIFAR10_FILES), ("CIFAR-100", CIFAR100_FILES)):
        expected = [*layout[0], layout[1], layout[2]]
        present = [f for f in expected if (root / f).is_file()]
        distinctive = name == "CIFAR-10" or "meta" in present  # train/test alone are too common
        if present and distinctive and len(present) < len(expected):
            missing = [f for f in expected if f not in present]
            raise DataError(
                f"{root}: looks like a {name} python folder but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing (expected {', '.join(expected)})"
            )


def _layout(root: Path) -> tuple | None:
    for layout in (CIFAR10_FILES, CIFAR100_FILES):
        train, test, meta = layout[0], layout[1], layout[2]
        if root.is_dir() and all((root / f).is_file() for f in [*train, test, meta]):
            return layout
    return None


def named_root(name: str, data_dir: str | Path, download: bool) -> Path:
    """Where cifar10/cifar100 live under `data_dir`, downloading them first if asked."""
    folder, tv_class = NAMED[name]
    root = Path(data_dir).expanduser() / folder
    if find_cifar_root(root) is None:
        if root.is_dir():
            check_complete(root)
        if not download:
            raise DataError(
                f"{name} not found in {root}; pass --download to fetch it, or --data PATH to the folder"
            )
        _download(name, tv_class, Path(data_dir).expanduser())
    return root


def _download(name: str, tv_class: str, data_dir: Path) -> None:
    """Fetch and unpack the archive with torchvision's checksummed downloader (never its
    unpickling). A failure (no network, a proxy, a bad checksum) is a one-line DataError saying
    what was fetched, from where, and where to put the files by hand."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    spec = getattr(tvd, tv_class)
    folder = NAMED[name][0]
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(spec.url, str(data_dir), filename=spec.filename, md5=spec.tgz_md5)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a checksum mismatch a RuntimeError
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"could not download {name} ({spec.filename}, md5 {spec.tgz_md5}) from {spec.url}: {reason}; "
            f"without internet here, fetch that file elsewhere and unpack it into {data_dir}, so that "
            f"{data_dir / folder} holds its batch files, then run again without --download "
            "(or pass --data PATH to the unpacked folder)"
        ) from None


def load_cifar(
    root: Path | None,
    *,
    input_size: int | None = None,
    val_split: float | None = None,
    split_seed: int = 0,
    earlier: Earlier | None = None,
) -> ImageData:
    """CIFAR's training batches as the training split; the test batch as validation, unless
    `val_split` holds out part of the training data instead (the paper's 45k/5k, sec. 4.2); a
    run's `earlier` split is re-applied (and the data checked to be the one it was made on)."""
    layout = _layout(root) if root is not None else None
    if layout is None:
        raise DataError(f"{root}: not a CIFAR-10 or CIFAR-100 python folder")
    train_files, test_file, meta_file, label_key, names_key = layout
    train = _concat([_read_batch(root / f, label_key) for f in train_files])
    test = _read_batch(root / test_file, label_key)
    meta = safe_load(root / meta_file)
    classes = _class_names(meta, names_key, root / meta_file)
    for split in (train, test):
        if int(split.labels.max()) >= len(classes) or int(split.labels.min()) < 0:
            raise DataError(f"{root}: labels outside the {len(classes)} classes of {meta_file}")
    check_val_split(val_split)
    name = "cifar10" if len(classes) == 10 else "cifar100"
    if val_split:
        assert train.images is not None
        train_idx, val_idx, record, messages = split_tensors(
            train.labels,
            train.images,
            classes,
            val_split,
            split_seed,
            earlier=earlier,
            name=f"{name} in {root}",
        )
        train, test = subset(train, train_idx), subset(train, val_idx)
    else:
        assert train.images is not None and test.images is not None
        record, messages = own_split(
            train.labels,
            train.images,
            test.labels,
            test.images,
            classes,
            earlier=earlier,
            name=f"{name} in {root}",
        )
    size = input_size or 32
    if size != 32:
        from torchvision.transforms.v2 import functional as TF

        train.images = TF.resize(train.images, [size, size], antialias=True)
        test.images = TF.resize(test.images, [size, size], antialias=True)
    mean, std = channel_stats(train.images)
    return ImageData(
        name=name,
        classes=classes,
        train=train,
        val=test,
        mean=mean,
        std=std,
        input_size=size,
        notes={"color": "RGB", "source": str(root)},
        split=record,
        messages=messages,
    )


def _read_batch(path: Path, label_key: str) -> Split:
    batch = safe_load(path)
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: expected a dict with 'data' and '{label_key}'")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
    if len(labels) != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {len(labels)} labels")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return Split(labels=torch.as_tensor(list(labels), dtype=torch.int64), images=images)


def _concat(splits: list[Split]) -> Split:
    return Split(labels=torch.cat([s.labels for s in splits]), images=torch.cat([s.images for s in splits]))


def _class_names(meta: Any, key: str, path: Path) -> list[str]:
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: expected a list of class names under '{key}'")
    return names
