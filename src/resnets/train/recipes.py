"""Named training recipes: complete configurations, printable with `--print-config`.

- paper-cifar: He et al. 2015, sec. 4.2 (CIFAR-10).
- paper-cifar-2016: He et al. 2016 (pre-activation), appendix: paper-cifar with a constant
  warm-up (lr 0.01 for the first 400 iterations, then 0.1), for every network.
- paper-imagenet: He et al. 2015, sec. 3.4 (ImageNet).
- modern: cosine schedule with warm-up, label smoothing, MixUp/CutMix, EMA and no weight decay
  on BN and biases, after torchvision's "new training recipe" (Vryniotis 2021).
- default: what `resnets train` runs with no arguments: ResNet-20 on the bundled digits,
  in about 11 s on two idle CPU cores.

Recipes decide from the network, never from its name: paper-cifar's warm-up applies to the
resolved spec (any CIFAR-layout network of 110 layers or more, however it is written).
"""

from __future__ import annotations

from typing import Any

from resnets.errors import ResNetsError
from resnets.models.create import resolve_spec
from resnets.train.config import TrainConfig

RECIPES: dict[str, dict[str, Any]] = {
    "default": dict(
        model="resnet20",
        data="digits",
        epochs=12,
        batch_size=64,
        lr=0.1,
        nesterov=True,
        weight_decay=5e-4,
        decay_norm_and_bias=False,
        schedule="cosine",
        warmup=1,
        augment="auto",
        pad=2,
        flip=False,  # a mirrored digit is another symbol (or none)
    ),
    # Sec. 4.2: "We use a weight decay of 0.0001 and momentum of 0.9 ... mini-batch size of 128 ...
    # We start with a learning rate of 0.1, divide it by 10 at 32k and 48k iterations, and
    # terminate training at 64k iterations, which is determined on a 45k/5k train/val split ...
    # 4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded
    # image or its horizontal flip." The 45k/5k split only chose the schedule: the reported
    # numbers (Table 6) are of networks trained on all 50k training images and tested on the 10k
    # test images, so that is what the recipe does; `val_split=5000` gives the 45k/5k split.
    "paper-cifar": dict(
        model="resnet20",
        data="cifar10",
        iterations=64_000,
        epochs=None,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        milestones=[32_000, 48_000],
        gamma=0.1,
        normalize="per-pixel-mean",  # "The network inputs are 32x32 images, with the per-pixel mean subtracted."
        augment="pad-crop",
        pad=4,
        flip=True,
    ),
    # Sec. 3.4: "The image is resized with its shorter side randomly sampled in [256, 480] for
    # scale augmentation. A 224x224 crop is randomly sampled from an image or its horizontal
    # flip ... We use SGD with a mini-batch size of 256. The learning rate starts from 0.1 and is
    # divided by 10 when the error plateaus ... weight decay of 0.0001 and a momentum of 0.9."
    # The crop is taken "with the per-pixel mean subtracted" (the mean image at 224 px, of resized
    # and centre-cropped training images).
    # The plateaus are taken at epochs 30 and 60 of 90, as in torchvision's reference.
    "paper-imagenet": dict(
        model="resnet50_v1",
        data="imagenet",
        epochs=90,
        batch_size=256,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        milestones=[30, 60],
        gamma=0.1,
        input_size=224,
        normalize="per-pixel-mean",
        augment="scale",
        flip=True,
        lighting=0.1,  # "The standard color augmentation in [21] is used": AlexNet's, sec. 4.1
        eval_crops=10,
    ),
    "modern": dict(
        model="resnet56",
        data="cifar10",
        epochs=200,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        decay_norm_and_bias=False,
        schedule="cosine",
        warmup=5,
        label_smoothing=0.1,
        mixup_alpha=0.2,
        cutmix_alpha=1.0,
        ema_decay=0.999,
        augment="auto",
        pad=4,
        flip=True,
    ),
}

# He et al. 2016 (Identity Mappings), appendix: CIFAR training as in sec. 4.2 of the 2015 paper, and
# "for all CIFAR experiments we warm up the training by using a smaller learning rate of 0.01 at
# the beginning 400 iterations and go back to 0.1 after 400 iterations".
RECIPES["paper-cifar-2016"] = {
    **RECIPES["paper-cifar"],
    "model": "preact_resnet164",
    "warmup": 400,
    "warmup_lr": 0.01,
    "warmup_shape": "constant",
}

# Sec. 4.2: "For the 110-layer net ... we use 0.01 to warm up the training until the training
# error is below 80% (about 400 iterations), and then go back to 0.1." The 1202-layer net
# follows "the same training strategies". The rule, as we apply it: a network of the CIFAR layout
# (3x3 stem, no max-pool; sec. 4.2) with at least 110 weighted layers, plain or residual.
PAPER_CIFAR_WARMUP = {"warmup_lr": 0.01, "warmup_until_error": 0.8}
PAPER_CIFAR_WARMUP_DEPTH = 110


def list_recipes() -> list[str]:
    return list(RECIPES)


def resolve_recipe(name: str, **overrides: Any) -> TrainConfig:
    """The recipe's configuration with `overrides` applied (None values ignored), validated.

    paper-cifar adds the paper's low-lr warm-up when the network needs it (`needs_paper_warmup`:
    decided from its resolved spec, so `basic:18-18-18:16-32-64` is ResNet-110 too), unless the
    warm-up fields are overridden. Raises ResNetsError for an unknown recipe or bad field, and
    SpecError for a model paper-cifar cannot resolve.
    """
    if name not in RECIPES:
        raise ResNetsError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**RECIPES[name], **given}
    if name == "paper-cifar" and needs_paper_warmup(values["model"]):
        values.update({k: v for k, v in PAPER_CIFAR_WARMUP.items() if k not in given})
    # The length is given one way: an --epochs override replaces a recipe's iterations and back.
    if "iterations" in given and "epochs" not in given:
        values["epochs"] = None
    if "epochs" in given and "iterations" not in given:
        values["iterations"] = None
    return TrainConfig.from_dict(values).validate()


def needs_paper_warmup(model: str) -> bool:
    """Whether paper-cifar warms `model` up at lr 0.01 (sec. 4.2): a CIFAR-layout network (3x3
    stem) of at least 110 weighted layers, as ResNet-110 and -1202 are, named or written as a spec."""
    spec = resolve_spec(model)
    return spec.stem == "cifar" and spec.num_layers >= PAPER_CIFAR_WARMUP_DEPTH


def recipe_notes(name: str, config: TrainConfig) -> list[str]:
    """One-line facts about how recipe `name` resolved for `config`, for the command line to show:
    for paper-cifar, whether the ResNet-110 warm-up is on and why."""
    if name != "paper-cifar":
        return []
    spec = resolve_spec(config.model)
    depth = f"{config.model} has {spec.num_layers} layers"
    if config.warmup_until_error is not None:
        return [
            f"warm-up on: lr {config.warmup_lr:g} until the training error is below "
            f"{config.warmup_until_error:.0%}, then {config.lr:g} ({depth}; sec. 4.2 warms up "
            f"networks of {PAPER_CIFAR_WARMUP_DEPTH} layers or more)"
        ]
    if needs_paper_warmup(config.model):
        return [
            f"warm-up off, as set (--warmup-until-error none), although sec. 4.2 would warm up {config.model}"
        ]
    why = "not of the CIFAR layout" if spec.stem != "cifar" else f"fewer than {PAPER_CIFAR_WARMUP_DEPTH}"
    return [
        f"warm-up off: {depth}, {why} (sec. 4.2 warms up CIFAR networks of {PAPER_CIFAR_WARMUP_DEPTH} layers or more)"
    ]
