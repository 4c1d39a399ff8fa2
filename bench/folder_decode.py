"""A folder of small images trains at in-memory speed once decoded into memory: ResNet-20, CPU,
5,000 32-px CIFAR-10 JPEGs, one epoch, three ways in one run:

  in-memory   the same number of 32-px images held as tensors from the start (--data synthetic):
              the in-memory path's speed, the reference
  files       the JPEG folder read every epoch by DataLoader workers (--decode-in-memory never)
  decoded     the JPEG folder decoded once into memory (--decode-in-memory auto, the default)

    python bench/folder_decode.py [--images 5000] [--json out.json]

img/s is the training steps' throughput as `resnets train` reports it (summary.json); wall is the
whole call, data loading and decoding included. A discarded warm-up run comes first. All three use pad-crop + flip, batch 128, one
process. The JPEGs come from ../shared/data/cifar10-jpg (or $RESNETS_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import resnets
from resnets.train import resolve_recipe


def shared_data() -> Path:
    root = os.environ.get("RESNETS_SHARED_DATA")
    return Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def unpack(archive: Path, into: Path, per_class: int) -> None:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and int(Path(m.name).stem) < per_class]
        tar.extractall(into, members=members, filter="data")


def run(name: str, out: Path, **fields) -> dict:
    config = resolve_recipe(
        "default",
        model="resnet20",
        epochs=1,
        batch_size=128,
        augment="pad-crop",
        device="cpu",
        seed=0,
        **fields,
    )
    started = time.perf_counter()
    summary = resnets.train(config, out / name)
    wall = time.perf_counter() - started
    return {"img_per_s": summary["images_per_second"], "wall_s": wall, "val_top1": summary["val_top1"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=5000, help="training images (a tenth per class)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    per_class = args.images // 10
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cifar"
        unpack(shared_data() / "cifar10-jpg" / "train.tar.gz", root, per_class)
        unpack(shared_data() / "cifar10-jpg" / "test.tar.gz", root, 50)  # test/: 500 to validate on
        (root / "test").rename(root / "val")
        runs = Path(tmp) / "runs"
        count = args.images + 500
        # Discarded warm-up: the first run in a process pays one-off costs (thread pools, oneDNN
        # primitives for each shape) that would otherwise land on whichever run comes first.
        run("warm-up", runs, data="synthetic", synthetic_count=1000, val_split=200, input_size=32)
        rows["in-memory"] = run(
            "memory", runs, data="synthetic", synthetic_count=count, val_split=500, input_size=32
        )
        rows["files"] = run("files", runs, data=str(root), decode_in_memory="never")
        rows["decoded"] = run("decoded", runs, data=str(root), decode_in_memory="auto")
    reference = rows["in-memory"]["img_per_s"]
    print(f"{'':<10}  {'img/s':>7}  {'vs in-memory':>12}  {'wall s':>7}")
    for name, row in rows.items():
        print(
            f"{name:<10}  {row['img_per_s']:>7.0f}  {row['img_per_s'] / reference:>11.2f}x  {row['wall_s']:>7.1f}"
        )
    print(
        f"ResNet-20, {args.images} 32-px images, 1 epoch, batch 128, CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}, Python {platform.python_version()}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
