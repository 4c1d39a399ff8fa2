"""Training: a config dataclass, named recipes, one training step, one readable loop, checkpoints
that resume exactly, and `train`, which does what `resnets train` does."""

from resnets.train.config import TrainConfig
from resnets.train.launch import train
from resnets.train.recipes import RECIPES, list_recipes, resolve_recipe

__all__ = ["RECIPES", "TrainConfig", "list_recipes", "resolve_recipe", "train"]
