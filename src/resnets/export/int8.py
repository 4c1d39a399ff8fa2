"""INT8 ONNX: static quantization by onnxruntime, calibrated on real images, verified on held-out ones.

onnxruntime.quantization.quantize_static writes the model in the QDQ format (QuantizeLinear /
DequantizeLinear pairs around each convolution, which onnxruntime fuses into integer kernels when
it loads the file), with per-channel int8 weights (one scale per output channel, since a
convolution's filters differ in range) and uint8 activations whose ranges are the minimum and
maximum seen on calibration images (MinMax). PyTorch's own torch.ao.quantization is deprecated,
and an ONNX file is what a CPU server runs anyway.

Why uint8 activations: on x86, onnxruntime's U8S8 kernels measured 2.3x its fp32 at ResNet-50
batch 1 against 1.2x for S8S8 (docs/benchmarks.md). On CPUs without VNNI, U8S8's 16-bit
intermediate sums can saturate, so there the weights are quantized to 7 bits (`reduce_range`, as
onnxruntime's documentation advises); the held-out check measures what that costs.

The quantized model is judged by what it is for, classification: top-1 agreement with the fp32
model and the change in top-1 accuracy on held-out images the calibration never saw. An export
whose accuracy falls by more than `max_drop` points is refused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.data.datasets import ImageData, subset
from resnets.data.loaders import make_loader
from resnets.errors import DataError, ExportError
from resnets.export.onnx import INPUT_NAME, check_opset
from resnets.export.quiet import silenced
from resnets.preprocess import Preprocess
from resnets.text import shorten
from resnets.weights.format import WeightsMeta

CALIBRATION_IMAGES = 256
HELDOUT_IMAGES = 2000
MAX_DROP = 1.0  # top-1 accuracy points the INT8 model may lose on the held-out images
INT8_OPSET = 13  # QuantizeLinear's `axis` (per-channel scales) is new in opset 13
LOAD_BATCH = 64  # images decoded and run by PyTorch at a time

# A callback per stage ("calibrating", "verifying") and its number of images, returning a
# function to call after each image: a progress bar.
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class Int8Options:
    """What an INT8 export calibrates on and how it is judged.

    `data`: calibration images are a fixed sample of `calibration_images` from `data.train`, held-out
    images a fixed sample of `heldout_images` (0: all) from `data.val`, both preprocessed as the
    weights' metadata says. `max_drop`: the top-1 points the INT8 model may lose there.
    """

    data: ImageData
    calibration_images: int = CALIBRATION_IMAGES
    heldout_images: int = HELDOUT_IMAGES
    max_drop: float = MAX_DROP
    seed: int = 0


@dataclass
class Int8Check:
    """How the INT8 model compares with the eager fp32 model on held-out images (fractions of 1)."""

    data: str
    calibration_images: int
    heldout_images: int
    top1_fp32: float
    top1_int8: float
    agreement: float  # images whose INT8 top-1 class is the fp32 model's
    max_drop: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> float:
        """The change in top-1 accuracy, in percentage points (negative: INT8 is worse)."""
        return 100 * (self.top1_int8 - self.top1_fp32)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change_points": round(self.change, 4)}


def check_int8(
    format: str,
    precision: str,
    *,
    opset: int | None = None,
    calibration_images: int = CALIBRATION_IMAGES,
    heldout_images: int = HELDOUT_IMAGES,
    max_drop: float = MAX_DROP,
) -> None:
    """One-line ExportErrors for INT8 requests that cannot work, before any work is done."""
    if format != "onnx":
        raise ExportError(f"--int8 writes ONNX (onnxruntime's quantization); not available for {format}")
    if precision != "fp32":
        raise ExportError(f"--int8 quantizes the fp32 model; drop --precision {precision}")
    if opset is not None and opset < INT8_OPSET:
        check_opset(opset, at_least=INT8_OPSET)
    if calibration_images < 1:
        raise ExportError("--calibration-images must be at least 1")
    if heldout_images < 0:
        raise ExportError("--heldout-images must be 0 (all) or more")
    if not max_drop >= 0:
        raise ExportError("--max-accuracy-drop is in points lost and must be 0 or more")
    try:
        import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise ExportError("--int8 needs onnxruntime (pip install 'resnets[export]')") from None


def fit_to_weights(data: ImageData, meta: WeightsMeta, in_channels: int, num_classes: int) -> ImageData:
    """`data`, after checking that it fits the network: its channels, and for accuracy to mean
    anything, its classes. Its images are read through the weights' recorded pipeline (`batches`
    with `weights.format.preprocess_of`), as eval and predict read them.

    Raises DataError naming what does not fit."""
    if data.in_channels != in_channels:
        raise DataError(f"{data.name}: {data.in_channels}-channel images, but the model takes {in_channels}")
    named_by_us = "classes_from" in meta.extra and len(data.classes) == num_classes
    expected = meta.classes or [str(i) for i in range(num_classes)]
    if data.classes != expected and not named_by_us:
        raise DataError(
            f"{data.name}: its classes ({shorten(data.classes, 5)}) are not the {len(expected)} classes "
            f"the model was trained on ({shorten(expected, 5)}); held-out accuracy would mean nothing"
        )
    return data


def sample(data: ImageData, which: str, count: int, seed: int) -> ImageData:
    """`data` with a fixed random sample of `count` images of its `which` split ('train' or
    'val'; count 0: all of it) as its validation split, so that it loads with the evaluation
    transform (no augmentation), in file order."""
    split = data.train if which == "train" else data.val
    if len(split) == 0:
        raise DataError(f"{data.name}: no {'training' if which == 'train' else 'held-out'} images")
    if count and count < len(split):
        index = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:count]
        split = subset(split, index.sort().values)
    return replace(data, val=split)


def batches(
    data: ImageData, preprocess: Preprocess, batch_size: int = LOAD_BATCH
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images (N, C, H, W) float normalised, labels (N,)) of `data.val` on the CPU, in order,
    read through the evaluation pipeline `preprocess` (the weights' record)."""
    loader = make_loader(data, "val", batch_size=batch_size, device="cpu", preprocess=preprocess)
    yield from loader.epoch(0)


def quantize(
    fp32: str | os.PathLike,
    out: str | os.PathLike,
    images: Iterable[torch.Tensor],
    *,
    batch: int | None = 1,
    reduce_range: bool | None = None,
    on_image: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Quantize the fp32 ONNX file `fp32` into `out`: QDQ format, per-channel int8 weights,
    uint8 activations calibrated (MinMax) on `images` ((N, C, H, W) batches, normalised as the
    network expects), fed `batch` at a time (None: as they come, for a dynamic batch dimension).
    `reduce_range` None: on where the CPU lacks VNNI. Returns the settings used, for the record.

    onnxruntime's shape inference and graph optimisation (`quant_pre_process`) run first, as its
    documentation advises. Its logging and warnings are swallowed.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if reduce_range is None:
        reduce_range = not cpu_has_vnni()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = _feeds(images, batch, on_image)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="resnets-int8-") as work, silenced():
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return {
        "format": "QDQ",
        "weights": "int8 per output channel",
        "activations": "uint8",
        "calibration": "MinMax",
        "reduce_range": reduce_range,
    }


def _feeds(
    images: Iterable[torch.Tensor], batch: int | None, on_image: Callable[[int], None] | None
) -> Iterator[dict[str, Any]]:
    for x in images:
        parts = [x] if batch is None else list(x.split(batch))
        for part in parts:
            yield {INPUT_NAME: part.contiguous().numpy()}
            if on_image is not None:
                on_image(len(part))


def compare(
    model: nn.Module,
    run: Callable[[torch.Tensor], torch.Tensor],
    heldout: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    batch: int | None = 1,
    on_image: Callable[[int], None] | None = None,
) -> tuple[int, int, int, int]:
    """(images, fp32 correct, INT8 correct, top-1 agreements) of the eager fp32 `model` and the
    INT8 file's `run` over `heldout` batches, the file fed `batch` images at a time (None: whole)."""
    count = fp32_correct = int8_correct = agree = 0
    with torch.no_grad():
        for x, y in heldout:
            expected = model(x).argmax(1)
            parts = [x] if batch is None else list(x.split(batch))
            got = torch.cat([run(part.contiguous()).argmax(1) for part in parts])
            count += len(y)
            fp32_correct += int((expected == y).sum())
            int8_correct += int((got == y).sum())
            agree += int((got == expected).sum())
            if on_image is not None:
                on_image(len(y))
    if count == 0:
        raise DataError("no held-out images could be read to verify the INT8 model")
    return count, fp32_correct, int8_correct, agree


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI: 8-bit dot products without the 16-bit
    saturation of older U8S8 kernels), read from /proc/cpuinfo; False where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return False
