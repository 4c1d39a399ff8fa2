"""ONNX: a network exported with torch.onnx, and an onnxruntime session to run the file.

`resnets export --format onnx` and the onnxruntime peer of `resnets bench` both go through these
two functions, so the file the benchmark times is made the way users make theirs. `onnx`,
`onnxscript` and `onnxruntime` are optional dependencies (the `export` extra), imported when used.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from resnets.errors import ExportError

# The dynamo ONNX exporter implements opset 18 onwards; older opsets need the TorchScript one.
DYNAMO_MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "logits"


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

    Raises ExportError when the exporter cannot give the requested opset. Needs the `onnx` package
    (and `onnxscript` for the dynamo exporter).
    """
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
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running `session` on a CPU tensor (N, C, H, W) and returning its first output
    as a tensor."""
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
