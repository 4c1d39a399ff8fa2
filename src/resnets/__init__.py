"""resnets: the ResNet family of He et al. 2015, exact, fast and safe to run."""

from resnets.infer import Classifier
from resnets.inspect.summary import summary
from resnets.models import ResNet, ResNetSpec, create_model, list_models
from resnets.runtime.fold_bn import fold_bn
from resnets.runtime.optimize import optimize
from resnets.train import TrainConfig, train
from resnets.version import __version__
from resnets.weights import load_weights, save_weights

__all__ = [
    "__version__",
    "Classifier",
    "ResNet",
    "ResNetSpec",
    "TrainConfig",
    "create_model",
    "fold_bn",
    "list_models",
    "load_weights",
    "optimize",
    "save_weights",
    "summary",
    "train",
]
