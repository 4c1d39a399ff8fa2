"""resnets: the ResNet family of He et al. 2015, exact, fast and safe to run."""

from resnets.fast import optimize
from resnets.fuse import fuse_bn
from resnets.models import ResNet, ResNetSpec, create_model, list_models
from resnets.summary import summary
from resnets.weights import load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "ResNet",
    "ResNetSpec",
    "create_model",
    "fuse_bn",
    "list_models",
    "load_weights",
    "optimize",
    "save_weights",
    "summary",
]


def __getattr__(name: str):
    # Classifier pulls in torchvision and PIL; `import resnets` (and `resnets list`) stays light.
    if name == "Classifier":
        from resnets.infer import Classifier

        return Classifier
    raise AttributeError(f"module 'resnets' has no attribute {name!r}")
