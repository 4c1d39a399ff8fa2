"""Weights on disk: our safetensors + JSON format, checkpoints from torchvision, timm and CIFAR
reproductions (read weights-only), their key maps and recorded preprocessing, and conversion."""

from resnets.weights.format import WeightsMeta, read_safetensors, save_weights
from resnets.weights.load import find_weights, load_model, load_weights, read_weights

__all__ = [
    "WeightsMeta",
    "find_weights",
    "load_model",
    "load_weights",
    "read_safetensors",
    "read_weights",
    "save_weights",
]
