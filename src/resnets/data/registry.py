"""The registry of data sources: from what `--data` says to an `ImageData`.

'digits' and 'synthetic' are built in, 'cifar10'/'cifar100' are CIFAR python folders under
`data_dir`, and a path is a CIFAR python folder or an ImageFolder root.
"""

from __future__ import annotations

from pathlib import Path

from resnets.data import cifar, digits, folder, synthetic
from resnets.data.datasets import ImageData, pixel_mean
from resnets.data.split import Earlier, check_val_split
from resnets.errors import DataError
from resnets.preprocess import NORMALIZATIONS, Preprocess


def load_data(
    name: str,
    *,
    input_size: int | None = None,
    val_split: float | None = None,
    split_seed: int = 0,
    data_dir: str | Path = "data",
    download: bool = False,
    synthetic_count: int = 512,
    synthetic_classes: int = 10,
    default_size: int = 224,
    earlier: Earlier | None = None,
) -> ImageData:
    """The dataset `name`: 'digits', 'synthetic', 'cifar10', 'cifar100', or a path to a CIFAR
    python folder or an ImageFolder root.

    `val_split` holds out part of the training data (fraction or count, stratified: split.py);
    unset or 0, the dataset's own test/val part is the validation split (digits and synthetic,
    which have none, hold out 20% when it is unset and refuse 0). `default_size` is the
    resolution folders get when `input_size` is not given (the model's). `earlier` (a run's split:
    split.Earlier) re-applies its split.json, refusing data that changed since unless it accepts
    changes, or derives the split of a run made before splits were recorded as that version did.
    """
    check_val_split(val_split)
    kept = dict(
        val_split=val_split,
        split_seed=split_seed,
        earlier=earlier,
    )

    if name == "digits":
        return digits.load_digits_data(input_size=input_size, **kept)
    if name == "synthetic":
        return synthetic.load_synthetic(
            count=synthetic_count,
            classes=synthetic_classes,
            input_size=input_size or 32,
            **kept,
        )
    if name in cifar.NAMED:
        root = cifar.named_root(name, data_dir, download)
        return cifar.load_cifar(root, input_size=input_size, **kept)
    if name == "imagenet":
        raise DataError(
            "ImageNet cannot be downloaded for you; pass --data PATH to its ImageFolder root "
            "(train/<class>/*.JPEG and val/<class>/*.JPEG)"
        )
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(
            f"no dataset {name!r}: use 'digits', 'synthetic', 'cifar10', 'cifar100', or a path to a "
            "CIFAR python folder or an ImageFolder root"
        )
    for candidate in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
        if candidate.is_dir():
            cifar.check_complete(candidate)
    if cifar.find_cifar_root(path) is not None:
        return cifar.load_cifar(cifar.find_cifar_root(path), input_size=input_size, **kept)
    return folder.load_folder(path, input_size=input_size or default_size, **kept)


def load_eval_data(
    name: str,
    preprocess: Preprocess,
    *,
    data_dir: str | Path = "data",
    synthetic_count: int = 512,
    synthetic_classes: int = 10,
) -> ImageData:
    """What `resnets eval --data NAME` evaluates on, read at the weights' input size: for a
    folder of class folders, every image in it (or in its val/ part: folder.load_test_folder);
    for a CIFAR python folder or cifar10/cifar100, the test batch; for digits and synthetic,
    their held-out 20%."""
    size = preprocess.input_size[0]
    path = Path(name).expanduser()
    if name in ("digits", "synthetic", "imagenet", *cifar.NAMED) or not path.exists():
        return load_data(
            name,
            input_size=size,
            data_dir=data_dir,
            synthetic_count=synthetic_count,
            synthetic_classes=synthetic_classes,
            default_size=size,
        )
    for candidate in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
        if candidate.is_dir():
            cifar.check_complete(candidate)
    root = cifar.find_cifar_root(path)
    if root is not None:
        return cifar.load_cifar(root, input_size=size)
    return folder.load_test_folder(path, preprocess)


def with_normalization(data: ImageData, normalize: str) -> ImageData:
    """`data` normalised the way `normalize` says (preprocess.NORMALIZATIONS): per-channel keeps
    its mean/std; per-pixel-mean sets `mean_image` to the training split's mean image (He et al.
    2015, sec. 3.4 and 4.2; for folders, of the STATS_SAMPLE images the per-channel statistics
    come from, resized and centre-cropped as evaluated) and mean/std to its channel means and ones.

    Raises DataError for an unknown normalisation.
    """
    if normalize not in NORMALIZATIONS:
        raise DataError(f"unknown normalisation {normalize!r}; use one of {', '.join(NORMALIZATIONS)}")
    if normalize == "per-channel":
        return data
    if data.train.images is not None:
        image = pixel_mean(data.train.images)
    else:
        assert data.train.files is not None
        size, resize = data.input_size, data.resize_size or data.input_size
        image = folder.sample_images(data.train.files, size, resize).mean(0)
    data.mean_image = image
    data.mean = tuple(image.mean((1, 2)).tolist())
    data.std = (1.0,) * int(image.shape[0])
    return data
