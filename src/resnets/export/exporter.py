"""Ship a ResNet to another runtime: ONNX, TorchScript, a torch.export program, or our safetensors.

An export is only reported as done after the written file has been loaded back by its own
runtime (onnxruntime, torch.jit.load, torch.export.load, resnets.weights.load_model) and its
outputs compared with the eager fp32 model on random inputs. The file is written to a temp
name in the target folder and renamed only once that check passes, so a failed export leaves
nothing behind.

torch.onnx.verification.verify_onnx_program is not used for that check: it compares an ONNX
program with the torch program it was exported from (the same precision, the same batch, in
memory), while we compare the file as written, metadata and all, with the eager fp32 model at
each batch size, under one tolerance rule for every format, and also for the TorchScript-based
ONNX exporter, which makes no ONNX program to verify. onnx.checker still vets the ONNX file.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.atomic import atomic_write, write_json
from resnets.data.datasets import ImageData
from resnets.errors import ExportError, ResNetsError
from resnets.export.int8 import (
    INT8_OPSET,
    Int8Check,
    Int8Options,
    Progress,
    batches,
    check_int8,
    compare,
    fit_to_weights,
    quantize,
    sample,
)
from resnets.export.onnx import (
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    check_opset,
    export_onnx,
    onnx_runner,
    onnx_session,
)
from resnets.export.quiet import silenced
from resnets.models.zoo import default_input_size
from resnets.preprocess import Preprocess
from resnets.runtime.device import PRECISIONS
from resnets.runtime.fold_bn import fold_bn as fold_batchnorm
from resnets.text import first_line, size_hw
from resnets.weights.format import WeightsMeta, meta_for_model, preprocess_of, save_weights
from resnets.weights.load import load_model

FORMATS: dict[str, str] = {
    "onnx": ".onnx",
    "torchscript": ".pt",
    "exported-program": ".pt2",
    "safetensors": ".safetensors",
}
# An exported file holds its weights (and takes its input) in the precision's dtype itself, where
# running a network in PyTorch autocasts to it: fp32 is torch.float32 here.
DTYPES: dict[str, torch.dtype] = {name: dtype or torch.float32 for name, dtype in PRECISIONS.items()}
# onnxruntime has no bf16 convolutions on the CPU; our safetensors reload as an fp32 model.
FORMAT_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnx": ("fp32", "fp16"),
    "torchscript": tuple(PRECISIONS),
    "exported-program": tuple(PRECISIONS),
    "safetensors": ("fp32",),
}
# Max abs diff allowed against the eager fp32 model, per unit of output scale: the bound is
# TOLERANCE * max(1, max |eager logit|), since float rounding errors grow with the values.
# fp16 keeps 11 significant bits, bf16 8; over a network's depth a few units of the last place
# add up, so these leave a 4x or larger margin over what ResNet-20/18/50 show (docs/export.md).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
STATIC_BATCH = 1
EXAMPLE_DYNAMIC_BATCH = 2  # torch.export specialises sizes 0 and 1, so trace a dynamic batch at 2
VERIFY_DYNAMIC_BATCHES = (1, 3)
METADATA_FILE = "resnets.json"  # extra file inside TorchScript and .pt2 archives


@dataclass
class Check:
    batch_size: int
    max_abs_diff: float


@dataclass
class ExportReport:
    """What was written and how well the reloaded file matches the eager fp32 model."""

    path: str
    format: str
    size_bytes: int
    model: str
    precision: str
    input_shape: list[int]  # (C, H, W); the batch is fixed at 1 unless dynamic_batch
    dynamic_batch: bool
    fold_bn: bool
    exporter: str
    opset: int | None
    tolerance: float | None  # None for INT8, which is judged by `int8` instead
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    int8: Int8Check | None = None
    report_path: str | None = None  # INT8: the JSON of this report, beside the file

    @property
    def max_abs_diff(self) -> float | None:
        return max((c.max_abs_diff for c in self.checks), default=None)

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "max_abs_diff": self.max_abs_diff}
        data["int8"] = self.int8.to_dict() if self.int8 is not None else None
        return data


def export(
    model: nn.Module,
    format: str,
    out: str | os.PathLike,
    *,
    meta: WeightsMeta | None = None,
    opset: int | None = None,
    dynamic_batch: bool = False,
    fold_bn: bool = False,
    precision: str = "fp32",
    input_size: int | tuple[int, int] | list[int] | None = None,
    seed: int = 0,
    int8: Int8Options | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Export `model` to the file `out` as `format`, reload it, and keep it only if it matches.

    The input is (N, C, H, W) with C the spec's input channels and (H, W) = `input_size` (N or
    HxW pixels; default: the metadata's, else the network's own, 32 px for CIFAR nets and 224 px
    otherwise); N is 1, or free with `dynamic_batch`. The reloaded file must match the eager
    fp32 model on random inputs within TOLERANCE[precision] x max(1, max |logit|). `fold_bn`
    folds BatchNorm into the convolutions first (runtime.fold_bn); `precision` casts weights and
    input (fp16, bf16). `meta` (classes, mean/std, input size; default `meta_for_model`) is
    written into the file: ONNX metadata_props, an extra `resnets.json` in TorchScript and .pt2
    archives, the safetensors header. Returns the ExportReport (path, size in bytes, checks).

    `int8` (ONNX, fp32 only) writes a statically quantized model instead (export/int8.py:
    onnxruntime's QDQ format, per-channel int8 weights, uint8 activations calibrated on a sample
    of `int8.data`'s training images); it is verified on held-out images (`int8.data`'s
    validation split): top-1 agreement with the eager fp32 model and the change in top-1, and
    kept only if top-1 falls by at most `int8.max_drop` points. The report (ExportReport.to_dict)
    is then also written beside the file as `<out>.json`. `progress(stage, images)` may return a
    callback taking the number of images just done (calibrating, verifying): a progress bar.

    Raises ExportError (one line) for an unsupported combination, an ONNX opset outside what the
    model can be written at (export.onnx.opset_range: option A's strided shortcut needs 10), a
    failing exporter or a failed verification; InputError for a bad input size; OSError when
    `out` cannot be written. `out` is then left as it was, and the exporters' own output (progress,
    IR dumps, logging, warnings) never reaches the terminal.
    """
    check_options(format, opset=opset, fold_bn=fold_bn, precision=precision)
    if int8 is not None:
        check_int8(
            format,
            precision,
            opset=opset,
            calibration_images=int8.calibration_images,
            heldout_images=int8.heldout_images,
            max_drop=int8.max_drop,
        )
    started = time.perf_counter()
    model = _cpu_eval(model)
    if format == "onnx":
        check_opset(opset, model, at_least=INT8_OPSET if int8 is not None else MIN_OPSET)
    meta = meta or meta_for_model(model)
    height, width = size_hw(input_size or meta.input_size or default_input_size(model.spec))
    meta = replace(meta, input_size=height if height == width else [height, width])
    shape = (model.spec.in_channels, height, width)
    dtype = DTYPES[precision]
    exported = fold_batchnorm(model) if fold_bn else model
    exported = _float_copy(exported, dtype)
    sizes = VERIFY_DYNAMIC_BATCHES if dynamic_batch else (STATIC_BATCH,)
    generator = torch.Generator().manual_seed(seed)
    inputs = {b: torch.randn(b, *shape, generator=generator) for b in sizes}
    with torch.no_grad():
        expected = {b: model(x).float() for b, x in inputs.items()}
    scale = max(1.0, max(float(y.abs().max()) for y in expected.values()))
    tolerance: float | None = TOLERANCE[precision] * scale
    example = torch.randn(EXAMPLE_DYNAMIC_BATCH if dynamic_batch else STATIC_BATCH, *shape, dtype=dtype)
    writer = _WRITERS[format]
    report = ExportReport(
        path=str(out),
        format=format,
        size_bytes=0,
        model=meta.model,
        precision="int8" if int8 is not None else precision,
        input_shape=list(shape),
        dynamic_batch=dynamic_batch,
        fold_bn=fold_bn,
        exporter="",
        opset=None,
        tolerance=tolerance if int8 is None else None,
    )
    header = _export_header(meta, report)

    def write_and_verify(tmp: Path) -> None:
        try:
            with silenced():
                run = writer(exported, example, tmp, header, report, dynamic_batch=dynamic_batch, opset=opset)
        except (ResNetsError, OSError):
            raise
        except Exception as exc:
            raise ExportError(f"the {format} export failed: {first_line(exc, 200)}") from exc
        for b, x in inputs.items():
            try:
                with torch.no_grad(), silenced():
                    y = run(x.to(dtype)).float()
            except Exception as exc:
                raise ExportError(
                    f"the exported {format} file does not run at batch {b}: {first_line(exc)}"
                ) from exc
            diff = float((y - expected[b]).abs().max())
            report.checks.append(Check(b, diff))
            if not diff <= tolerance:  # also catches NaN
                raise ExportError(
                    f"{format} export does not match the eager model: max abs diff {diff:.3g} at "
                    f"batch {b} exceeds the tolerance {tolerance:.3g} ({precision}); nothing written"
                )

    if int8 is not None:
        data = fit_to_weights(int8.data, meta, model.spec.in_channels, model.spec.num_classes)
        if size_hw(data.input_size) != (height, width):
            raise ExportError(
                f"--int8: the data is at {data.input_size} px but the export at {height}x{width}; "
                "drop --input-size or calibrate on data of that size"
            )
        record = preprocess_of(meta, model.spec)
        write_and_verify = _int8_writer(
            model, exported, example, header, report, opset, int8, data, record, progress
        )
    path = atomic_write(out, write_and_verify)
    report.size_bytes = path.stat().st_size
    report.seconds = time.perf_counter() - started
    if int8 is not None:
        report.report_path = str(report_json(path))
        write_json(report.report_path, report.to_dict())
    return report


def report_json(path: str | os.PathLike) -> Path:
    """Where an INT8 export's report goes: beside the file, `model-int8.onnx.json`."""
    return Path(f"{path}.json")


def _int8_writer(
    model: nn.Module,
    exported: nn.Module,
    example: torch.Tensor,
    header: dict[str, str],
    report: ExportReport,
    opset: int | None,
    options: Int8Options,
    data: ImageData,
    record: Preprocess,
    progress: Progress | None,
) -> Callable[[Path], None]:
    """write_and_verify for INT8: export fp32 ONNX (to a temporary folder), quantize it into
    `tmp` calibrating on a sample of the training images, then compare the quantized file run
    by onnxruntime with the eager fp32 `model` on held-out images; refuse a drop beyond the bound."""
    import onnx

    calibration = sample(data, "train", options.calibration_images, options.seed)
    heldout = sample(data, "val", options.heldout_images, options.seed + 1)
    batch = None if report.dynamic_batch else STATIC_BATCH

    def tick(stage: str, images: int) -> Callable[[int], None] | None:
        return progress(stage, images) if progress is not None else None

    def write_and_verify(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="resnets-export-") as work:
            fp32 = Path(work) / "fp32.onnx"
            made = export_onnx(exported, example, fp32, opset=opset, dynamic_batch=report.dynamic_batch)
            report.exporter, report.opset = made.exporter, made.opset
            try:
                images = (x for x, _ in batches(calibration, record))
                settings = quantize(
                    fp32, tmp, images, batch=batch, on_image=tick("calibrating", len(calibration.val))
                )
                proto = onnx.load(str(tmp))
                del proto.metadata_props[:]
                for key, value in header.items():
                    proto.metadata_props.add(key=key, value=value)
                onnx.save(proto, str(tmp))
                onnx.checker.check_model(str(tmp), full_check=True)
                run = onnx_runner(onnx_session(tmp))
            except (ResNetsError, OSError):
                raise
            except Exception as exc:
                raise ExportError(f"the INT8 quantization failed: {first_line(exc, 200)}") from exc
        try:
            count, fp32_correct, int8_correct, agree = compare(
                model,
                run,
                batches(heldout, record),
                batch=batch,
                on_image=tick("verifying", len(heldout.val)),
            )
        except ResNetsError:
            raise
        except Exception as exc:
            raise ExportError(
                f"the INT8 model does not run on the held-out images: {first_line(exc, 200)}"
            ) from exc
        check = Int8Check(
            data=data.name,
            calibration_images=len(calibration.val),
            heldout_images=count,
            top1_fp32=fp32_correct / count,
            top1_int8=int8_correct / count,
            agreement=agree / count,
            max_drop=options.max_drop,
            settings=settings,
        )
        report.int8 = check
        if -check.change > options.max_drop:
            raise ExportError(
                f"the INT8 model loses {-check.change:.2f} points of top-1 ({100 * check.top1_fp32:.2f}% -> "
                f"{100 * check.top1_int8:.2f}%) on {count} held-out images, more than the "
                f"{options.max_drop:g} allowed (--max-accuracy-drop); nothing written"
            )

    return write_and_verify


def check_options(format: str, *, opset: int | None, fold_bn: bool, precision: str) -> None:
    """Raise one-line ExportErrors for combinations that cannot work, before any work is done."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if precision not in DTYPES:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(DTYPES)}")
    if precision not in FORMAT_PRECISIONS[format]:
        why = {
            "onnx": "onnxruntime has no bf16 convolutions on the CPU",
            "safetensors": "our weights files stay fp32 and are cast after loading",
        }[format]
        raise ExportError(
            f"--precision {precision} is not available for {format} ({why}); "
            f"use {' or '.join(FORMAT_PRECISIONS[format])}"
        )
    if opset is not None and format != "onnx":
        raise ExportError(f"--opset applies to onnx only, not {format}")
    if format == "onnx":
        check_opset(opset)
    if fold_bn and format == "safetensors":
        raise ExportError(
            "--fold-bn changes the module structure, which our safetensors format cannot rebuild; "
            "fold after loading with resnets.fold_bn(model)"
        )


# --- one writer per format: write `tmp`, return a function that runs the reloaded file -------

Runner = Callable[[torch.Tensor], torch.Tensor]


def _write_onnx(model, example, tmp, header, report, *, dynamic_batch, opset) -> Runner:
    import onnx

    made = export_onnx(model, example, None, opset=opset, dynamic_batch=dynamic_batch)
    report.exporter, report.opset = made.exporter, made.opset
    for key, value in header.items():
        made.proto.metadata_props.add(key=key, value=value)
    onnx.save(made.proto, str(tmp))
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejects the exported model: {first_line(exc)}") from exc
    return onnx_runner(onnx_session(tmp))


def _write_torchscript(model, example, tmp, header, report, *, dynamic_batch, opset) -> Runner:
    """torch.jit.trace: our forward has no data-dependent control flow, and its input checks read
    only static shapes (a traced graph keeps them as constants, hence the silenced warnings)."""
    with warnings.catch_warnings():
        # PyTorch deprecates TorchScript in favour of torch.export; docs/export.md says so.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={METADATA_FILE: json.dumps(header)})
        loaded = torch.jit.load(str(tmp), map_location="cpu")
    report.exporter = "torch.jit.trace"
    return lambda x: loaded(x)


def _write_exported_program(model, example, tmp, header, report, *, dynamic_batch, opset) -> Runner:
    dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    # Through file objects: torch.export wants paths to end in .pt2, and `tmp` does not.
    with open(tmp, "wb") as f:
        torch.export.save(program, f, extra_files={METADATA_FILE: json.dumps(header)})
    report.exporter = "torch.export"
    with open(tmp, "rb") as f:
        module = torch.export.load(f).module()
    return lambda x: module(x)


def _write_safetensors(model, example, tmp, header, report, *, dynamic_batch, opset) -> Runner:
    meta = WeightsMeta.from_header(header, tmp)
    save_weights(model, tmp, meta)
    report.exporter = "resnets.save_weights"
    loaded, _ = load_model(tmp, "cpu")
    return lambda x: loaded(x)


_WRITERS = {
    "onnx": _write_onnx,
    "torchscript": _write_torchscript,
    "exported-program": _write_exported_program,
    "safetensors": _write_safetensors,
}


def _export_header(meta: WeightsMeta, report: ExportReport) -> dict[str, str]:
    """Our weights metadata (`resnets.*` keys, JSON values) plus how this file was exported."""
    extra = {
        **meta.extra,
        "export": {
            "format": report.format,
            "precision": report.precision,
            "fold_bn": report.fold_bn,
            "dynamic_batch": report.dynamic_batch,
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
        },
    }
    return replace(meta, extra=extra).to_header()


def _cpu_eval(model: nn.Module) -> nn.Module:
    """The model on the CPU in eval mode; a copy when that would change the caller's model."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    return model if on_cpu and not model.training else copy.deepcopy(model).cpu().eval()


def _float_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    return model if dtype == torch.float32 else copy.deepcopy(model).to(dtype)
