"""Write CIFAR python folders byte-for-byte the way the real ones are: Python 2 pickles.

The real cifar-10-batches-py files were written by Python 2's cPickle (protocol 2): text is
Python 2 `str` (BINSTRING opcodes), the image array is rebuilt by
`numpy.core.multiarray._reconstruct` with its raw bytes as a Python 2 str. Python 3's pickle
would write neither, so this pickler does it by hand.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


class Py2Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:  # a Python 2 str
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:  # Python 2 code wrote text as str too
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str

    def save_global(self, obj, name=None) -> None:
        if obj is _RECONSTRUCT:  # numpy 1's module path, as in the real files
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def dump_py2(obj, path: Path) -> None:
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def write_cifar10(root: Path, per_batch: int = 10, test: int = 20, seed: int = 0) -> dict:
    """A cifar-10-batches-py folder with 5 training batches; returns the arrays written."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    written = {"train": [], "train_labels": []}
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        written["train"].append(data)
        written["train_labels"] += labels
        batch = {
            "batch_label": f"training batch {i} of 5",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
        }
        dump_py2(batch, root / f"data_batch_{i}")
    data = rng.integers(0, 256, (test, 3072), dtype=np.uint8)
    labels = [j % 10 for j in range(test)]
    dump_py2(
        {"batch_label": "testing batch 1 of 1", "labels": labels, "data": data, "filenames": []},
        root / "test_batch",
    )
    dump_py2({"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072}, root / "batches.meta")
    written.update(test=data, test_labels=labels, names=names)
    return written


def write_cifar100(root: Path, train: int = 40, test: int = 20, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    fine = [f"fine{i}" for i in range(100)]
    for name, n in (("train", train), ("test", test)):
        dump_py2(
            {
                "filenames": [],
                "batch_label": name,
                "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
                "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            },
            root / name,
        )
    dump_py2({"fine_label_names": fine, "coarse_label_names": [f"c{i}" for i in range(20)]}, root / "meta")
