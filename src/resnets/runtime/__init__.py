"""Running a network fast: device and precision, optimize(), BN folding, oneDNN Graph, metrics."""

from resnets.runtime.device import PRECISIONS, autocast, resolve_device
from resnets.runtime.optimize import OptimizedModel, optimize

__all__ = ["PRECISIONS", "OptimizedModel", "autocast", "optimize", "resolve_device"]
