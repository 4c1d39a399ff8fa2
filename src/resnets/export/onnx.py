"""ONNX: a network exported with torch.onnx, and an onnxruntime session to run the file.

`resnets export --format onnx` and the onnxruntime peer of `resnets bench` both go through these
two functions, so the file the benchmark times is made the way users make theirs. `onnx`,
`onnxscript` and `onnxruntime` are optional dependencies (the `export` extra), imported when used.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from resnets.errors import ExportError
from resnets.export.quiet import silenced
from resnets.models.blocks import ZeroPadShortcut
from resnets.text import first_line

# The dynamo ONNX exporter implements opset 18 onwards; older opsets need the TorchScript one,
# which implements 7 to 20 (torch.onnx's ONNX_MIN_OPSET, ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET).
DYNAMO_MIN_OPSET = 18
MIN_OPSET = 7
TORCHSCRIPT_MAX_OPSET = 20
# Option A's shortcut subsamples with a strided slice (x[:, :, ::2, ::2]): an ONNX Slice with
# `steps`, which Slice gained in opset 10.
STRIDED_SLICE_OPSET = 10
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def opset_range(model: nn.Module | None = None, *, dynamo: bool | None = None) -> tuple[int, int, str]:
    """(oldest, newest, why the oldest) ONNX opsets `model` can be exported at here.

    The newest is what the installed `onnx` package defines (the dynamo exporter writes any of
    them), or 20 without onnxscript (the TorchScript-based exporter's last). The oldest is 7
    (torch.onnx's first), or 10 when the network holds something older opsets cannot express:
    option A's strided shortcut (He et al. 2015, sec. 3.3) is a Slice with steps, new in opset 10.
    `model` None: the bounds for any network.
    """
    import onnx

    if dynamo is None:
        dynamo = _have_onnxscript()
    newest = onnx.defs.onnx_opset_version() if dynamo else TORCHSCRIPT_MAX_OPSET
    for name, module in model.named_modules() if model is not None else ():
        if isinstance(module, ZeroPadShortcut) and module.stride != 1:
            why = f"option A's strided shortcut ({name}) is an ONNX Slice with steps, new in opset 10"
            return STRIDED_SLICE_OPSET, newest, why
    return MIN_OPSET, newest, "torch.onnx exports nothing older"


def check_opset(opset: int | None, model: nn.Module | None = None, *, at_least: int = MIN_OPSET) -> None:
    """Raise a one-line ExportError unless `model` can be exported at `opset` (None: the
    exporter's default, always fine): before any exporting, so an impossible request costs
    nothing and never ends in the exporter's traceback. `at_least` raises the floor (INT8's
    per-channel QuantizeLinear needs 13)."""
    if opset is None:
        return
    oldest, newest, why = opset_range(model)
    if at_least > oldest:
        oldest, why = (
            at_least,
            f"INT8 per-channel weights need QuantizeLinear's axis, new in opset {at_least}",
        )
    if opset < oldest:
        what = f" for {getattr(model, 'name', type(model).__name__)}" if model is not None else ""
        raise ExportError(f"--opset {opset} is too old{what}: {why}; use {oldest} to {newest}")
    if opset > newest:
        source = (
            "the installed onnx package"
            if newest > TORCHSCRIPT_MAX_OPSET
            else "torch's TorchScript-based exporter (install onnxscript for newer)"
        )
        raise ExportError(f"--opset {opset} is newer than {source} knows; use {oldest} to {newest}")


def _have_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxExport(NamedTuple):
    """What torch.onnx made: the model proto, which exporter made it, and its opset."""

    proto: Any  # onnx.ModelProto
    exporter: str
    opset: int


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike | None = None,
    *,
    opset: int | None = None,
    dynamic_batch: bool = False,
) -> OnnxExport:
    """Export `model` traced on `example` (N, C, H, W) to ONNX; write it to `path` if given.

    torch.onnx's maintained (dynamo) exporter from opset 18 (`opset=None`: its default); the
    TorchScript-based one for older opsets (which the dynamo exporter would silently raise to 18)
    or where onnxscript is not installed. The input is named "image" and the output "logits";
    `dynamic_batch` leaves dimension 0 free (traced at `example`'s batch, which must not be 0 or 1
    for the dynamo exporter: torch.export specialises those sizes).

    Raises ExportError (one line; the exporters' own output is swallowed) for an opset outside
    `opset_range(model)`, a failing exporter, or a file of another opset than requested. Needs the `onnx` package
    (and `onnxscript` for the dynamo exporter).
    """
    import onnx

    check_opset(opset, model)
    use_dynamo = (opset is None or opset >= DYNAMO_MIN_OPSET) and _have_onnxscript()
    try:
        with silenced():  # progress on stdout, the IR graph dumped on a failure, logging, warnings
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
    except Exception as exc:
        at = f"opset {opset}" if opset is not None else "its default opset"
        raise ExportError(f"torch.onnx could not export the model at {at}: {first_line(exc, 200)}") from exc
    made = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and made != opset:
        raise ExportError(f"the exporter produced opset {made}, not the requested {opset}")
    if path is not None:
        onnx.save(proto, str(path))
    exporter = "torch.onnx (dynamo)" if use_dynamo else "torch.onnx (TorchScript)"
    return OnnxExport(proto, exporter, made)


def onnx_session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An onnxruntime InferenceSession for the ONNX file at `path`, on the CPU, with `threads`
    intra-op threads (default: torch's, so both runtimes get the same cores). Needs the
    `onnxruntime` package."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about its own graph rewrites
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running `session` on a CPU tensor (N, C, H, W) and returning its first output
    as a tensor."""
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
