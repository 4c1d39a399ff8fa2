"""The paper's CIFAR augmentation as batched tensor ops, on whatever device the batch is on.

He et al. 2015, sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
sampled from the padded image or its horizontal flip." Per-sample Python (a DataLoader
transform) costs more than a small ResNet's whole step on a GPU; here a batch is cropped and
flipped by one gather, with no host round trip, so data held on the GPU stays there.

Same semantics as torchvision's RandomCrop(size, padding=p) (zero fill) followed by
RandomHorizontalFlip(): `crop_flip` with given offsets is the deterministic part, and
`sample_crop_flip` draws the offsets from a torch.Generator, so a seed fixes the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_crop_flip(
    n: int,
    padding: int = 4,
    *,
    flip_p: float = 0.5,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample crop offsets (top, left) in [0, 2*padding] and flip flags, drawn uniformly."""
    if generator is not None:
        device = generator.device
    top = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), device=device, generator=generator)
    flip = torch.rand(n, device=device, generator=generator) < flip_p
    return top, left, flip


def crop_flip(
    x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor, padding: int = 4
) -> torch.Tensor:
    """Zero-pad (N, C, H, W) by `padding`, crop each sample back to H x W at (top[i], left[i])
    of the padded image, and mirror it left-right where flip[i]: one gather for the batch.

    Output pixel (i, j) of sample n is padded pixel (top[n] + i, left[n] + j), or
    (top[n] + i, left[n] + W - 1 - j) when flipped (the flip is of the crop).
    """
    if x.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4) if padding else x
    rows = top.to(x.device).view(n, 1) + torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flip.to(x.device).view(n, 1), w - 1 - cols, cols) + left.to(x.device).view(n, 1)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # Advanced indexing on dims 0, 2, 3 puts them first: (N, H, W, C) -> back to (N, C, H, W).
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2)


def random_crop_flip(
    x: torch.Tensor,
    padding: int = 4,
    *,
    flip_p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The paper's CIFAR augmentation for a whole batch: random crop with padding, random flip.

    The result is channels-last in memory (what the fast path wants); its values are NCHW-indexed
    like the input.
    """
    top, left, flip = sample_crop_flip(
        x.shape[0], padding, flip_p=flip_p, device=x.device, generator=generator
    )
    return crop_flip(x, top, left, flip, padding)
