"""Training: a config dataclass, named recipes, one readable loop, checkpoints that resume exactly."""

from resnets.train.config import TrainConfig
from resnets.train.loop import train
from resnets.train.recipes import RECIPES, list_recipes, resolve_recipe

__all__ = ["RECIPES", "TrainConfig", "list_recipes", "resolve_recipe", "train"]
