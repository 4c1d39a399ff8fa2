"""Datasets for training and evaluation: bundled digits, synthetic images, CIFAR folders, ImageFolders.

`load_data(name_or_path, ...)` returns an `ImageData`; `make_loader` turns one of its splits into
batches on the training device (tensor-resident for small datasets, a DataLoader for folders).
"""

from resnets.data.datasets import ImageData, Split
from resnets.data.loaders import make_loader
from resnets.data.registry import load_data, load_eval_data

__all__ = ["ImageData", "Split", "load_data", "load_eval_data", "make_loader"]
