"""Ship a ResNet to another runtime: ONNX, TorchScript, a torch.export program, or our safetensors.

An export is only reported as done after the written file has been loaded back by its own
runtime (onnxruntime, torch.jit.load, torch.export.load, resnets.weights.load_model) and its
outputs compared with the eager fp32 model on random inputs. The file is written to a temp
name in the target folder and renamed only once that check passes, so a failed export leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnets.atomic import atomic_write
from resnets.errors import ExportError, SpecError
from resnets.models.create import create_model
from resnets.models.zoo import ZOO, default_input_size
from resnets.runtime.fold_bn import fold_bn as fold_batchnorm
from resnets.weights.format import WeightsMeta, save_weights
from resnets.weights.load import find_weights, load_model

FORMATS: dict[str, str] = {
    "onnx": ".onnx",
    "torchscript": ".pt",
    "exported-program": ".pt2",
    "safetensors": ".safetensors",
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# onnxruntime has no bf16 convolutions on the CPU; our safetensors reload as an fp32 model.
PRECISIONS = {
    "onnx": ("fp32", "fp16"),
    "torchscript": ("fp32", "fp16", "bf16"),
    "exported-program": ("fp32", "fp16", "bf16"),
    "safetensors": ("fp32",),
}
# Max abs diff allowed against the eager fp32 model, per unit of output scale: the bound is
# TOLERANCE * max(1, max |eager logit|), since float rounding errors grow with the values.
# fp16 keeps 11 significant bits, bf16 8; over a network's depth a few units of the last place
# add up, so these leave a 4x or larger margin over what ResNet-20/18/50 show (docs/export.md).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2}
# The dynamo ONNX exporter implements opset 18 onwards; older opsets need the TorchScript one.
DYNAMO_MIN_OPSET = 18
STATIC_BATCH = 1
EXAMPLE_DYNAMIC_BATCH = 2  # torch.export specialises sizes 0 and 1, so trace a dynamic batch at 2
VERIFY_DYNAMIC_BATCHES = (1, 3)
INPUT_NAME, OUTPUT_NAME = "image", "logits"
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
    tolerance: float
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_abs_diff": self.max_abs_diff}

    def format_text(self) -> str:
        c, h, w = self.input_shape
        batch = "N" if self.dynamic_batch else str(STATIC_BATCH)
        opset = f", opset {self.opset}" if self.opset is not None else ""
        options = [self.precision] + (["BN folded"] if self.fold_bn else [])
        lines = [
            f"wrote {self.path} ({_human_size(self.size_bytes)})",
            f"format: {self.format} via {self.exporter}{opset}; {self.model}, input {batch}x{c}x{h}x{w}, "
            + ", ".join(options),
            f"verified against the eager fp32 model, tolerance {self.tolerance:.2g} "
            f"(= {TOLERANCE[self.precision]:g} x max(1, max |logit|)):",
        ]
        for check in self.checks:
            lines.append(f"  batch {check.batch_size}: max abs diff {check.max_abs_diff:.3g}")
        return "\n".join(lines)


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
) -> ExportReport:
    """Export `model` to `out` as `format`, reload it, and keep it only if it matches.

    `meta` (classes, mean/std, input size) is written into the file: ONNX metadata_props,
    an extra `resnets.json` in TorchScript and .pt2 archives, the safetensors header.
    Raises ExportError for an unsupported combination or a failed verification; `out` is then
    left as it was.
    """
    check_options(format, opset=opset, fold_bn=fold_bn, precision=precision)
    started = time.perf_counter()
    model = _cpu_eval(model)
    meta = meta or meta_for_model(model)
    height, width = _hw(input_size or meta.input_size or _default_size(model))
    meta = replace(meta, input_size=height if height == width else [height, width])
    shape = (model.spec.in_channels, height, width)
    dtype = DTYPES[precision]
    exported = fold_batchnorm(model) if fold_bn else model
    exported = _float_copy(exported, dtype)
    batches = VERIFY_DYNAMIC_BATCHES if dynamic_batch else (STATIC_BATCH,)
    generator = torch.Generator().manual_seed(seed)
    inputs = {b: torch.randn(b, *shape, generator=generator) for b in batches}
    with torch.no_grad():
        expected = {b: model(x).float() for b, x in inputs.items()}
    scale = max(1.0, max(float(y.abs().max()) for y in expected.values()))
    tolerance = TOLERANCE[precision] * scale
    example = torch.randn(EXAMPLE_DYNAMIC_BATCH if dynamic_batch else STATIC_BATCH, *shape, dtype=dtype)
    writer = _WRITERS[format]
    report = ExportReport(
        path=str(out),
        format=format,
        size_bytes=0,
        model=meta.model,
        precision=precision,
        input_shape=list(shape),
        dynamic_batch=dynamic_batch,
        fold_bn=fold_bn,
        exporter="",
        opset=None,
        tolerance=tolerance,
    )
    header = _export_header(meta, report)

    def write_and_verify(tmp: Path) -> None:
        run = writer(exported, example, tmp, header, report, dynamic_batch=dynamic_batch, opset=opset)
        for b, x in inputs.items():
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    y = run(x.to(dtype)).float()
            except Exception as exc:
                raise ExportError(
                    f"the exported {format} file does not run at batch {b}: {_first_line(exc)}"
                ) from exc
            diff = float((y - expected[b]).abs().max())
            report.checks.append(Check(b, diff))
            if not diff <= tolerance:  # also catches NaN
                raise ExportError(
                    f"{format} export does not match the eager model: max abs diff {diff:.3g} at "
                    f"batch {b} exceeds the tolerance {tolerance:.3g} ({precision}); nothing written"
                )

    path = atomic_write(out, write_and_verify)
    report.size_bytes = path.stat().st_size
    report.seconds = time.perf_counter() - started
    return report


def check_options(format: str, *, opset: int | None, fold_bn: bool, precision: str) -> None:
    """Raise one-line ExportErrors for combinations that cannot work, before any work is done."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose from {', '.join(FORMATS)}")
    if precision not in DTYPES:
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(DTYPES)}")
    if precision not in PRECISIONS[format]:
        why = {
            "onnx": "onnxruntime has no bf16 convolutions on the CPU",
            "safetensors": "our weights files stay fp32 and are cast after loading",
        }[format]
        raise ExportError(
            f"--precision {precision} is not available for {format} ({why}); "
            f"use {' or '.join(PRECISIONS[format])}"
        )
    if opset is not None and format != "onnx":
        raise ExportError(f"--opset applies to onnx only, not {format}")
    if opset is not None and opset < 7:
        raise ExportError(f"--opset {opset} is too old; use 7 or newer (18+ for the dynamo exporter)")
    if fold_bn and format == "safetensors":
        raise ExportError(
            "--fold-bn changes the module structure, which our safetensors format cannot rebuild; "
            "fold after loading with resnets.fold_bn(model)"
        )


def load_source(
    source: str | os.PathLike, device: str = "cpu", model: str | None = None
) -> tuple[nn.Module, WeightsMeta, Path | None]:
    """(model, metadata, weights file) for a run directory, a weights file (`model` names the
    network of one that does not say), or a model name or spec (randomly initialised: handy
    for trying a runtime or for tests)."""

    path = Path(source)
    if path.exists():
        net, meta = load_model(path, device, model=model)
        return net, meta, find_weights(path)[0]
    text = str(source)
    try:
        net = create_model(text)
    except SpecError as exc:
        if os.sep in text or "/" in text or Path(text).suffix in (".safetensors", ".pt", ".pth", ".bin"):
            raise ExportError(f"{text}: no such run directory, weights file or model name") from None
        raise ExportError(f"{text}: not a run directory or weights file, and {exc}") from None
    return net.eval().to(device), meta_for_model(net), None


def meta_for_model(model: nn.Module) -> WeightsMeta:
    """Metadata for a model that came without a weights file: its spec and its zoo facts."""

    name = getattr(model, "name", "custom")
    spec = getattr(model, "spec", None)
    info = ZOO.get(name)
    return WeightsMeta(
        model=name,
        spec=spec.to_dict() if spec is not None else None,
        mean=list(info.mean) if info else None,
        std=list(info.std) if info else None,
        input_size=info.input_size if info else None,
    )


def default_out(
    source: str | os.PathLike, weights: Path | None, format: str, *, fold_bn: bool, precision: str
) -> Path:
    """Next to the weights (run/model.safetensors -> run/model.onnx), or ./<model>.<ext>."""
    tag = ("-fused" if fold_bn else "") + ("" if precision == "fp32" else f"-{precision}")
    if weights is not None:
        out = weights.with_name(weights.stem + tag + FORMATS[format])
        if out == weights:
            raise ExportError(f"exporting {weights} as safetensors would overwrite it; pass --out FILE")
        return out
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(source))
    return Path(name[:80] + tag + FORMATS[format])


def check_writable(out: str | os.PathLike) -> Path:
    """Fail early, with one line, if `out` cannot be written: before minutes of exporting."""
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise ExportError(f"{out}: cannot write here (folder {parent} does not exist)")
    if not parent.is_dir():
        raise ExportError(f"{out}: cannot write here ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{out}: cannot write here ({parent} is not writable)")
    return out


# --- one writer per format: write `tmp`, return a function that runs the reloaded file -------

Runner = Callable[[torch.Tensor], torch.Tensor]


def _write_onnx(model, example, tmp, header, report, *, dynamic_batch, opset) -> Runner:
    import onnx
    import onnxruntime as ort

    proto = _onnx_proto(model, example, report, dynamic_batch=dynamic_batch, opset=opset)
    for key, value in header.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(tmp))
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejects the exported model: {_first_line(exc)}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _onnx_proto(model, example, report, *, dynamic_batch, opset):
    """torch.onnx's maintained (dynamo) exporter from opset 18; the TorchScript one for older
    opsets (which the dynamo exporter would silently raise to 18) or without onnxscript."""
    import onnx

    use_dynamo = opset is None or opset >= DYNAMO_MIN_OPSET
    if use_dynamo:
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            use_dynamo = False
    quiet = contextlib.redirect_stdout(io.StringIO())  # the exporters print progress to stdout
    with quiet, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if use_dynamo:
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic_batch else None,
                external_data=False,
                verbose=False,
            )
            proto = program.model_proto
        else:
            buffer = io.BytesIO()
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
            )
            proto = onnx.load_from_string(buffer.getvalue())
    report.exporter = "torch.onnx (dynamo)" if use_dynamo else "torch.onnx (TorchScript)"
    report.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and report.opset != opset:
        raise ExportError(f"the exporter produced opset {report.opset}, not the requested {opset}")
    return proto


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


def _default_size(model: nn.Module) -> int:

    return default_input_size(model.spec)


def _hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _human_size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
