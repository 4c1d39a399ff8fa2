"""What the CIFAR reproduction's published weights score on the CIFAR-10 test JPEGs, and what JPEG
costs them: each net on the files as they are, and on the same files re-encoded once more.

    python bench/cifar_jpeg.py                       # ../shared/data (or $RESNETS_SHARED_DATA)
    python bench/cifar_jpeg.py --nets resnet20 --limit 2000 --json out.json

The pipeline is the reproduction's own evaluation (trainer.py: ToTensor, then ImageNet mean/std, no
resize) written out with PIL and numpy, not through `resnets eval`; the network is ours with the
converted weights (tests/realdata checks that both agree).

The originals are not here, so the cost of the JPEG generation the files went through is measured
by adding one more. Re-encoding with the files' own 8x8 block grid is nearly idempotent (the
coefficients are already quantized), so it says little; shifted by 3 pixels first (edge pixels
repeated, cropped back after decoding), the blocks and the 2x2 chroma cells no longer line up with
those of the first encoding and the new generation loses about what a first one does. Quality 75
with 4:2:0 chroma subsampling is what the files have (PIL's defaults; the files' quantization
tables are the standard ones at 75); quality 75 without subsampling and quality 100 with it
separate the two losses.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import resnets
from resnets.weights import load_model

NETS = {
    "resnet20": ("resnet20-12fca82f.th", 91.73),
    "resnet32": ("resnet32-d509ac18.th", 92.63),
    "resnet44": ("resnet44-014dd654.th", 93.10),
    "resnet56": ("resnet56-4bfd9763.th", 93.39),
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = np.float32([0.485, 0.456, 0.406])[:, None, None]
STD = np.float32([0.229, 0.224, 0.225])[:, None, None]
SHIFT = 3  # pixels: moves the 8x8 JPEG blocks and the 2x2 chroma cells off the first encoding's
CONDITIONS = {
    "as published (JPEG q~75, 4:2:0)": None,
    "+ q100 4:4:4, shifted (control)": dict(quality=100, subsampling=0, shift=SHIFT),
    "+ q75 4:2:0, same grid": dict(quality=75, subsampling=2, shift=0),
    "+ q95 4:2:0, shifted": dict(quality=95, subsampling=2, shift=SHIFT),
    "+ q75 4:2:0, shifted": dict(quality=75, subsampling=2, shift=SHIFT),
    "+ q75 4:4:4, shifted": dict(quality=75, subsampling=0, shift=SHIFT),
    "+ q100 4:2:0, shifted": dict(quality=100, subsampling=2, shift=SHIFT),
}


def shared_data() -> Path:
    root = os.environ.get("RESNETS_SHARED_DATA")
    return Path(root) if root else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_pixels(folder: Path, limit: int | None, reencode: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) and labels, class by class in file order (the first `limit`/10 each)."""
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((folder / name).iterdir())
        for path in files[: limit // len(CLASSES) if limit else None]:
            image = Image.open(path).convert("RGB")
            if reencode is not None:
                image = jpeg_again(image, **reencode)
            images.append(np.asarray(image))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def jpeg_again(image: Image.Image, quality: int, subsampling: int, shift: int) -> Image.Image:
    """One more JPEG generation at `quality` and `subsampling` (0: 4:4:4, 2: 4:2:0), the image
    first moved `shift` pixels down and right (edges repeated) and moved back after decoding."""
    pixels = np.pad(np.asarray(image), ((shift, 0), (shift, 0), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return Image.fromarray(decoded[shift:, shift:])


@torch.no_grad()
def top1(model: torch.nn.Module, pixels: np.ndarray, labels: np.ndarray) -> float:
    x = (pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - MEAN) / STD
    correct = 0
    for start in range(0, len(x), 500):
        logits = model(torch.from_numpy(x[start : start + 500]))
        correct += int((logits.argmax(1).numpy() == labels[start : start + 500]).sum())
    return 100.0 * correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nets", default=",".join(NETS), help="comma-separated (default: all four)")
    parser.add_argument("--limit", type=int, help="images (a tenth per class) instead of all 10,000")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    data = shared_data()
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(data / "cifar10-jpg" / "test.tar.gz") as tar:
            tar.extractall(tmp, filter="data")
        sets = {c: load_pixels(Path(tmp) / "test", args.limit, how) for c, how in CONDITIONS.items()}
    for net in args.nets.split(","):
        model, _ = load_model(data / "pretrained-cifar" / NETS[net][0], model=net)
        model = resnets.optimize(model, mode="infer", device="cpu")
        results[net] = {c: top1(model, *sets[c]) for c in CONDITIONS}
    width = max(map(len, CONDITIONS))
    print(f"{'':<{width}}  " + "  ".join(f"{n:>9}" for n in results))
    print(
        f"{'published (original test set)':<{width}}  " + "  ".join(f"{NETS[n][1]:>8.2f}%" for n in results)
    )
    for c in CONDITIONS:
        print(f"{c:<{width}}  " + "  ".join(f"{results[n][c]:>8.2f}%" for n in results))
    images = len(next(iter(sets.values()))[1])
    print(
        f"{images} test images; torch {torch.__version__}, Pillow {Image.__version__}, "
        f"{platform.processor() or platform.machine()}, {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"images": images, "top1": results}, indent=2))


if __name__ == "__main__":
    main()
