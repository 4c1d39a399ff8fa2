"""The real CIFAR-10 files of ../shared/data (or $RESNETS_SHARED_DATA): where they are, what the
published weights claim, and unpacking part of an archive into a temporary folder."""

import os
import tarfile
from pathlib import Path

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PUBLISHED = {  # file, top-1 % on the original test set (the reproduction's README)
    "resnet20": ("resnet20-12fca82f.th", 91.73),
    "resnet32": ("resnet32-d509ac18.th", 92.63),
    "resnet44": ("resnet44-014dd654.th", 93.10),
    "resnet56": ("resnet56-4bfd9763.th", 93.39),
}


def shared_data() -> Path:
    root = os.environ.get("RESNETS_SHARED_DATA")
    return Path(root) if root else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def unpack(archive: Path, into: Path, per_class: int | None) -> Path:
    """Unpack `archive` (split/<class>/NNNN.jpg) into `into`, only the first `per_class` files of
    each class (by name) when given; returns the split folder."""
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        if per_class is not None:
            members = [m for m in members if int(Path(m.name).stem) < per_class]
        tar.extractall(into, members=members, filter="data")
    (split,) = {Path(m.name).parts[0] for m in members}
    return into / split
