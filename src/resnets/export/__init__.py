"""Shipping a network to another runtime, verified: ONNX (fp32, fp16 or INT8), TorchScript,
torch.export, safetensors."""

from resnets.export.exporter import FORMATS, ExportReport, export
from resnets.export.int8 import Int8Check, Int8Options, quantize
from resnets.export.onnx import export_onnx, onnx_session, opset_range

__all__ = [
    "FORMATS",
    "ExportReport",
    "Int8Check",
    "Int8Options",
    "export",
    "export_onnx",
    "onnx_session",
    "opset_range",
    "quantize",
]
