"""The ResNet family: specs, blocks, the builder and the named zoo."""

from resnets.models.create import create_model, list_models, resolve_spec
from resnets.models.resnet import ResNet
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import ZOO

__all__ = ["ZOO", "ResNet", "ResNetSpec", "create_model", "list_models", "resolve_spec"]
