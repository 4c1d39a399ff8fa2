"""Shipping a network to another runtime, verified: ONNX, TorchScript, torch.export, safetensors."""

from resnets.export.exporter import FORMATS, ExportReport, export
from resnets.export.onnx import export_onnx, onnx_session

__all__ = ["FORMATS", "ExportReport", "export", "export_onnx", "onnx_session"]
