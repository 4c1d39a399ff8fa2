"""What a weights file from elsewhere does not say, and we know: its origin, its class names and the
evaluation pipeline it was published with.

A torchvision or timm state dict holds tensors only, yet each source evaluates its weights its own
way (torchvision's V2 ResNet-50 resizes to 232, timm's `resnet50.a1_in1k` crops 95% with bicubic
interpolation, the CIFAR reproduction normalises with ImageNet's statistics at 32 px, uncropped).
`recognise` names the source a file comes from, from what the file itself shows, and gives that
source's own pipeline as a `Preprocess` record (each with its reference below):

- torchvision's published files, by their name (`resnet50-11ad3fa6.pth`): that weights entry's
  `transforms()` (torchvision.models.*_Weights);
- torchvision's reference `train.py` checkpoints (`{"model", "args", ...}`): its `--val-resize-size`,
  `--val-crop-size`, `--interpolation`, with ImageNet's mean/std (references/classification/presets.py);
- timm: a model name with a pretrained tag (`resnet50.a1_in1k`), a timm-only name (`resnet50d`), a
  file in the Hugging Face cache of `timm/<name>`, or a `CheckpointSaver` file (`{"arch", "args",
  "version", ...}`): timm's own pretrained config and `resolve_data_config` when timm is installed;
- the CIFAR reproduction (akamaster/pytorch_resnet_cifar10, its head named `linear`): 32 px as is,
  ImageNet's mean/std (trainer.py: `transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229,
  0.224, 0.225])`, no resize).

Anything else gets the family's usual pipeline (`family_preprocess`), marked "assumed", so the
command line can say so and offer --mean/--std/--crop-pct/--interpolation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from resnets.errors import WeightsError
from resnets.models.spec import ResNetSpec
from resnets.models.zoo import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD
from resnets.preprocess import Preprocess

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGENET_INPUT, IMAGENET_RESIZE = 224, 256  # torchvision's IMAGENET1K_V1 eval transform (V2 uses 232)
ASSUMED = "assumed"
CIFAR_REPRODUCTION = "the CIFAR reproduction (akamaster/pytorch_resnet_cifar10)"
_HF_CACHE = re.compile(r"models--timm--([\w.\-]+)")


@dataclass(frozen=True)
class Origin:
    """Where a foreign weights file comes from: `source` in words, the `preprocess` it was
    evaluated with (None when unknown: the family's is assumed), the network it names (a zoo
    name, when the file says), and a timm pretrained name to look up once the network is known."""

    source: str = ""
    preprocess: Preprocess | None = None
    model: str | None = None
    timm_name: str | None = None


def is_assumed(preprocess: Preprocess | None) -> bool:
    """Whether a record is a guess from the network's family rather than from the weights' source."""
    return preprocess is None or preprocess.source.startswith(ASSUMED)


def family_preprocess(spec: ResNetSpec) -> Preprocess:
    """The pipeline assumed for a network whose weights' origin is not known: a CIFAR stem (sec.
    4.2) gets CIFAR-10's per-channel statistics at 32 px (fitted, never zoomed); any other ResNet
    torchvision's ImageNet evaluation (shorter side 256, centre crop 224, bilinear, ImageNet
    mean/std; the paper's single-crop test, sec. 3.4). Statistics are left out for inputs that are
    not RGB."""
    if spec.stem == "cifar":
        record = Preprocess(
            input_size=(32, 32),
            mean=CIFAR10_MEAN,
            std=CIFAR10_STD,
            source=f"{ASSUMED}: CIFAR-10 statistics at 32 px (a CIFAR network of unknown origin)",
        )
    else:
        record = Preprocess(
            input_size=(IMAGENET_INPUT, IMAGENET_INPUT),
            resize_size=IMAGENET_RESIZE,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            source=f"{ASSUMED}: torchvision's ImageNet evaluation (an ImageNet network of unknown origin)",
        )
    if spec.in_channels != 3:
        return Preprocess(
            input_size=record.input_size,
            resize_size=record.resize_size,
            color="L" if spec.in_channels == 1 else "RGB",
            source=record.source,
        )
    return record


def recognise(path: str | os.PathLike, checkpoint: Any, tensors: Mapping[str, Any]) -> Origin:
    """The origin of a foreign file: from its name and path, the training checkpoint around its
    tensors (`checkpoint`: what torch.load returned, or None for a safetensors file) and its
    tensor names. An empty Origin when nothing gives it away."""
    path = Path(path)
    if isinstance(checkpoint, Mapping):
        args = checkpoint.get("args")
        if "arch" in checkpoint and "version" in checkpoint and args is not None:
            return _timm_checkpoint(checkpoint, args)
        if "model" in checkpoint and hasattr(args, "val_crop_size"):
            return _torchvision_reference(args)
    if _has_cifar_head(tensors):
        return Origin(CIFAR_REPRODUCTION, cifar_reproduction_preprocess())
    weights = torchvision_weights_by_file().get(path.name)
    if weights is not None:
        return Origin(f"torchvision {weights}", torchvision_preprocess(weights))
    hub = _HF_CACHE.search(str(path.resolve()))
    if hub is not None:
        name = hub.group(1)
        return Origin(f"timm {name} (Hugging Face cache)", timm_preprocess(name), timm_name=name)
    return Origin()


def cifar_reproduction_preprocess() -> Preprocess:
    """akamaster/pytorch_resnet_cifar10, trainer.py: the 32x32 test images as they are,
    `transforms.ToTensor()` then `Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])`."""
    return Preprocess(input_size=(32, 32), mean=IMAGENET_MEAN, std=IMAGENET_STD, source=CIFAR_REPRODUCTION)


@cache
def torchvision_weights_by_file() -> dict[str, str]:
    """File name of each published torchvision ResNet-family weights -> its weights entry
    ("ResNet50_Weights.IMAGENET1K_V2"), from torchvision's own tables."""
    from torchvision import models

    table = {}
    for name in models.list_models(module=models):
        if not name.startswith(("resnet", "wide_resnet", "resnext")):
            continue
        for weights in models.get_model_weights(name):
            table[weights.url.rsplit("/", 1)[-1]] = f"{type(weights).__name__}.{weights.name}"
    return table


def torchvision_preprocess(entry: str) -> Preprocess:
    """The evaluation transform of a torchvision weights entry ("ResNet50_Weights.IMAGENET1K_V2"):
    `weights.transforms()`, an ImageClassification(crop_size, resize_size, mean, std,
    interpolation) (torchvision/transforms/_presets.py)."""
    from torchvision import models

    enum_name, member = entry.split(".")
    preset = getattr(getattr(models, enum_name), member).transforms()
    return Preprocess(
        input_size=(preset.crop_size[0], preset.crop_size[0]),
        resize_size=preset.resize_size[0],
        interpolation=preset.interpolation.value,
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        source=f"torchvision {entry}",
    )


def timm_preprocess(name: str, args: Mapping[str, Any] | None = None) -> Preprocess | None:
    """timm's evaluation pipeline for the timm model `name` ("resnet50.a1_in1k", "resnet50d"):
    `timm.data.resolve_data_config(args, pretrained_cfg=...)`, what timm's train.py and
    validate.py evaluate with (`args`: a training run's settings, which win over the pretrained
    config). None when timm is not installed or does not know the name and `args` say nothing."""
    try:
        from timm.data import resolve_data_config
        from timm.models import get_pretrained_cfg
    except ImportError:
        return _timm_defaults(name, args) if args else None
    cfg = get_pretrained_cfg(name)
    if cfg is None and not args:
        return None
    config = resolve_data_config(dict(args or {}), pretrained_cfg=cfg.to_dict() if cfg is not None else None)
    _, height, width = config["input_size"]
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg is not None and cfg.tag else name
    return Preprocess(
        input_size=(height, width),
        crop_pct=config["crop_pct"],
        interpolation=config["interpolation"] or "bilinear",
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        source=f"timm {tag}" + (" (the run's settings)" if args else " (pretrained config)"),
    )


def timm_name_of(model: str) -> str | None:
    """The timm pretrained name a model name stands for: itself with a tag ("resnet50.a1_in1k"), or a
    name only timm publishes ("resnet50d"; torchvision's own names are not timm's by default)."""
    if "." in model:
        return model
    if model in _torchvision_names():
        return None
    return model


def split_tag(model: str) -> str:
    """A timm pretrained name without its tag: "resnet50.a1_in1k" -> "resnet50"."""
    return model.split(".", 1)[0]


def _timm_checkpoint(checkpoint: Mapping[str, Any], args: Any) -> Origin:
    """timm.utils.CheckpointSaver's file: {"epoch", "arch" (= args.model), "state_dict", "optimizer",
    "version", "args", "metric", ...}. Its validation ran with resolve_data_config(vars(args), model)."""
    arch = str(checkpoint.get("arch"))
    settings = {k: v for k, v in vars(args).items() if v is not None} if hasattr(args, "__dict__") else {}
    preprocess = timm_preprocess(arch, settings)
    return Origin(f"timm train.py checkpoint of {arch}", preprocess, model=split_tag(arch))


def _torchvision_reference(args: Any) -> Origin:
    """torchvision references/classification/train.py: {"model", "optimizer", "lr_scheduler", "epoch",
    "args", "model_ema"?, "scaler"?}; it validates with presets.ClassificationPresetEval(
    crop_size=args.val_crop_size, resize_size=args.val_resize_size, interpolation=args.interpolation)
    and that preset's default ImageNet mean/std."""
    crop = int(args.val_crop_size)
    preprocess = Preprocess(
        input_size=(crop, crop),
        resize_size=int(getattr(args, "val_resize_size", IMAGENET_RESIZE)),
        interpolation=str(getattr(args, "interpolation", "bilinear")),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source="torchvision references/classification/train.py (the run's --val-resize-size, --val-crop-size, --interpolation)",
    )
    model = getattr(args, "model", None)
    return Origin("torchvision reference train.py checkpoint", preprocess, model=model)


def _timm_defaults(name: str, args: Mapping[str, Any]) -> Preprocess:
    """Without timm: the run's own settings, timm's defaults where unset (224 px, crop_pct 0.875,
    bilinear, ImageNet mean/std: timm/data/constants.py)."""
    size = args.get("input_size") or (3, args.get("img_size") or 224, args.get("img_size") or 224)
    return Preprocess(
        input_size=(int(size[1]), int(size[2])),
        crop_pct=float(args.get("crop_pct") or 0.875),
        interpolation=args.get("interpolation") or "bilinear",
        mean=tuple(args.get("mean") or IMAGENET_MEAN),
        std=tuple(args.get("std") or IMAGENET_STD),
        source=f"timm {name} (the run's settings; timm's defaults where unset, timm not installed)",
    )


def _has_cifar_head(tensors: Mapping[str, Any]) -> bool:
    """The CIFAR reproduction names its classifier `linear` (module.linear.weight under DataParallel)."""
    return any(k.split("module.")[-1] == "linear.weight" for k in tensors)


@cache
def _torchvision_names() -> frozenset[str]:
    from torchvision import models

    return frozenset(models.list_models(module=models))


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in label order (torchvision's `meta["categories"]`)."""
    text = (resources.files("resnets") / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line (blank lines ignored), in label order."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: cannot read class names ({exc.__class__.__name__})") from None
    if not names:
        raise WeightsError(f"{path}: no class names in it (expected one per line)")
    return names
