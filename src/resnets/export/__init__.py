"""Shipping a network to another runtime, verified: ONNX, TorchScript, torch.export, safetensors."""

from resnets.export.exporter import ExportReport, export

__all__ = ["ExportReport", "export"]
