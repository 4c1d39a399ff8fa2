"""Running a network fast: device and precision, optimize(), BN folding, oneDNN Graph, metrics."""

from resnets.runtime.device import PRECISIONS, autocast, resolve_device
from resnets.runtime.fold_bn import fuse_bn
from resnets.runtime.optimize import OptimizedModel, optimize

__all__ = ["PRECISIONS", "OptimizedModel", "autocast", "fuse_bn", "optimize", "resolve_device"]
