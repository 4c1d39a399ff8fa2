"""The batched crop-and-flip against torchvision's per-sample transforms with the same offsets."""

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from resnets.data.augment import crop_flip, random_crop_flip, sample_crop_flip


def per_sample_reference(x, top, left, flip, padding):
    """What RandomCrop(size, padding=p) then RandomHorizontalFlip() do, one image at a time."""
    h, w = x.shape[-2:]
    out = []
    for img, t, lft, f in zip(x, top.tolist(), left.tolist(), flip.tolist()):
        img = TF.crop(TF.pad(img, [padding]), t, lft, h, w)
        out.append(TF.horizontal_flip(img) if f else img)
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
@pytest.mark.parametrize("shape, padding", [((16, 3, 32, 32), 4), ((5, 1, 7, 9), 2), ((3, 3, 8, 8), 0)])
def test_crop_flip_equals_torchvision_crop_and_flip_per_sample(shape, padding, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=g) * 255).to(dtype)
    top, left, flip = sample_crop_flip(shape[0], padding, generator=g)
    torch.testing.assert_close(
        crop_flip(x, top, left, flip, padding),
        per_sample_reference(x, top, left, flip, padding),
        rtol=0,
        atol=0,
    )


def test_every_offset_and_both_flips_occur_within_range():
    top, left, flip = sample_crop_flip(4000, 4, generator=torch.Generator().manual_seed(0))
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))
    assert 0.45 < flip.float().mean().item() < 0.55
    counts = torch.bincount(top, minlength=9).float() / 4000
    assert counts.min() > 0.08 and counts.max() < 0.14  # uniform: 1/9 each


def test_a_seeded_generator_fixes_the_batch():
    x = torch.rand(8, 3, 32, 32)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(3))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_crop_flip_matches_torchvision_random_crop_and_flip_in_distribution():
    """Each output is one of the 9x9x2 images torchvision's RandomCrop + flip can produce."""
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    out = random_crop_flip(x, padding=1, generator=torch.Generator().manual_seed(0))
    transform = v2.Compose([v2.RandomCrop(6, padding=1), v2.RandomHorizontalFlip()])
    torch.manual_seed(0)
    for img, got in zip(x, out):
        possible = {transform(img).numpy().tobytes() for _ in range(400)}
        assert got.numpy().tobytes() in possible


def test_output_is_channels_last_with_the_inputs_shape_and_dtype():
    x = torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_zero_padding_without_flips_is_the_identity():
    x = torch.rand(4, 3, 8, 8)
    zeros = torch.zeros(4, dtype=torch.long)
    assert torch.equal(crop_flip(x, zeros, zeros, torch.zeros(4, dtype=torch.bool), padding=0), x)


def test_non_batched_input_is_rejected():
    with pytest.raises(ValueError, match="N, C, H, W"):
        random_crop_flip(torch.rand(3, 32, 32))
