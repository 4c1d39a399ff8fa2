"""The ResNet family: specs, blocks, the builder, the named zoo and the backbone wrapper."""

from resnets.models.create import create_model, list_models, resolve_spec
from resnets.models.features import FeatureInfo, ResNetFeatures
from resnets.models.resnet import ResNet
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import ZOO

__all__ = [
    "ZOO",
    "FeatureInfo",
    "ResNet",
    "ResNetFeatures",
    "ResNetSpec",
    "create_model",
    "list_models",
    "resolve_spec",
]
