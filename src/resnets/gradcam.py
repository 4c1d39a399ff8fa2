"""Grad-CAM heat-maps: where in an image a network found the evidence for a class.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", eq. 1-2): the feature maps A^k of a layer are weighted by the
spatial mean of the class score's gradient with respect to them, alpha_k = mean_ij dy^c/dA^k_ij,
summed and rectified, ReLU(sum_k alpha_k A^k), then scaled to 0..1 and resized to the input. For
a ResNet the natural layer is the last stage (layer4; layer3 for the CIFAR nets): the deepest
maps that still have a spatial layout, just before the global average pool (He et al. 2015,
sec. 3.4).

The computation is the maintained `grad-cam` package's (pytorch_grad_cam.GradCAM; the `explain`
extra), which handles the hooks and the per-image scaling; this module chooses the layer, runs it
on our networks and draws the overlay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from resnets.errors import InputError, ResNetsError
from resnets.text import shorten

MIN_VIEW = 256  # pixels: small inputs (32 px CIFAR, 16 px digits) are enlarged for viewing


class GradCams(NamedTuple):
    """Heat-maps (N, H, W) in 0..1 at the input's size, the class explained per image, and the
    softmax probabilities (N, classes) of the forward pass that made them."""

    maps: torch.Tensor
    classes: list[int]
    probabilities: torch.Tensor


def default_layer(model: nn.Module) -> str:
    """The last stage's name (layer4 for ImageNet ResNets, layer3 for the CIFAR ones), or the
    last module holding a convolution for other networks."""
    depths = getattr(getattr(model, "spec", None), "depths", None)
    if depths:
        return f"layer{len(depths)}"
    last = ""
    for name, module in model.named_children():
        if any(isinstance(m, nn.Conv2d) for m in module.modules()):
            last = name
    if not last:
        raise ResNetsError(f"{type(model).__name__} has no convolution to explain")
    return last


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule `name` (a dotted path as in state_dict keys: layer4, layer3.2, layer4.1.conv2).

    Raises InputError naming the layers there are, or for a layer without feature maps (fc)."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        stages = [n for n in modules if n and "." not in n]
        raise InputError(
            f"no layer {name!r} in this network; try one of {shorten(stages, 10)} (or e.g. layer2.0)"
        )
    if isinstance(modules[name], (nn.Linear, nn.Flatten)):
        raise InputError(
            f"layer {name!r} has no feature maps to weight; choose a convolutional layer such as "
            f"{default_layer(model)} (the default) or layer2.0"
        )
    return modules[name]


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    *,
    layer: str | None = None,
    classes: int | Sequence[int] | None = None,
) -> GradCams:
    """Grad-CAM maps of `model` for normalised `images` (N, C, H, W) at `layer` (default:
    default_layer), for `classes` (one index for all images, one per image, or None: each image's
    top-1 class).

    The model runs in eval mode with autograd on (on its own device; the images are moved there);
    its parameters' gradients are cleared afterwards. Raises InputError for an unknown layer or
    class, ResNetsError when the `grad-cam` package is missing.
    """
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise ResNetsError("explanations need the grad-cam package: pip install 'resnets[explain]'") from None

    target = find_layer(model, layer or default_layer(model))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = images.to(device).float()
    num_classes = getattr(getattr(model, "spec", None), "num_classes", None)
    wanted = _per_image(classes, len(x), num_classes)
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[target]) as cam:
            targets = None if wanted is None else [ClassifierOutputTarget(c) for c in wanted]
            maps = cam(input_tensor=x, targets=targets)
            logits = cam.outputs.detach().float()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    chosen = wanted if wanted is not None else logits.argmax(1).tolist()
    return GradCams(torch.from_numpy(np.ascontiguousarray(maps)).float(), chosen, logits.softmax(1).cpu())


def _per_image(classes: int | Sequence[int] | None, n: int, num_classes: int | None) -> list[int] | None:
    if classes is None:
        return None
    chosen = [int(classes)] * n if isinstance(classes, int) else [int(c) for c in classes]
    if len(chosen) != n:
        raise InputError(f"{len(chosen)} classes given for {n} images")
    bad = [c for c in chosen if c < 0 or (num_classes is not None and c >= num_classes)]
    if bad:
        raise InputError(f"class {bad[0]} does not exist: the network has {num_classes} classes")
    return chosen


def overlay(image: torch.Tensor, heat: torch.Tensor, *, alpha: float = 0.5) -> Image.Image:
    """The heat-map (H, W) in 0..1 over `image` (C, H, W) in 0..1 (one or three channels), as an
    RGB PIL image: the 'jet' colour map, red where the evidence is, blended with weight `alpha`.
    Inputs smaller than MIN_VIEW pixels are enlarged by a whole factor (nearest neighbour, so the
    network's pixels stay visible) for viewing."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = np.ascontiguousarray(
        image.float().clamp(0, 1).expand(3, *image.shape[-2:]).permute(1, 2, 0).numpy()
    )
    picture = Image.fromarray(show_cam_on_image(rgb, heat.numpy(), use_rgb=True, image_weight=1 - alpha))
    factor = math.ceil(MIN_VIEW / min(picture.size))
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    return picture
