"""AlexNet's PCA colour augmentation (Krizhevsky et al. 2012, sec. 4.1) in paper-imagenet,
against the eigen-decomposition fb.resnet.torch uses, typed in here from its source."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from resnets.data.transforms import Lighting, folder_train_transform
from resnets.train import resolve_recipe

# fb.resnet.torch, datasets/imagenet.lua: `pca = {eigval = ..., eigvec = ...}` (eigenvectors as columns)
EIGVAL = np.array([0.2175, 0.0188, 0.0045])
EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def test_lighting_adds_one_rgb_offset_along_the_principal_components_with_coefficients_of_std_0_1():
    torch.manual_seed(0)
    image = torch.rand(3, 5, 7)
    lighting = Lighting(0.1)
    alphas = []
    for _ in range(4000):
        offset = (lighting(image) - image).numpy()
        assert np.ptp(offset.reshape(3, -1), axis=1).max() < 1e-6  # the same for every pixel
        # offset = eigvec @ (alpha * eigval): solve for the per-image coefficients alpha
        alphas.append(np.linalg.solve(EIGVEC, offset[:, 0, 0]) / EIGVAL)
    alphas = np.array(alphas)
    assert alphas.mean(0) == pytest.approx([0, 0, 0], abs=0.01)
    assert alphas.std(0) == pytest.approx([0.1, 0.1, 0.1], rel=0.05)  # N(0, 0.1), independently
    assert np.abs(np.corrcoef(alphas.T) - np.eye(3)).max() < 0.06
    assert torch.equal(Lighting(0.0)(image), image)


def test_paper_imagenet_adds_lighting_before_normalising_and_in_memory_data_refuses_it(run_cli):
    config = resolve_recipe("paper-imagenet")
    assert config.lighting == 0.1
    t = folder_train_transform("scale", 224, pad=0, flip=True, mean=(0, 0, 0), std=(1, 1, 1), lighting=0.1)
    kinds = [type(step) for step in t.transforms]
    assert kinds.index(Lighting) == kinds.index(v2.ToDtype) + 1  # on the 0..1 image, as fb.resnet.torch
    assert kinds.index(Lighting) < kinds.index(v2.Normalize)
    result = run_cli("train", "--lighting", "0.1", "--epochs", "1", "--out", "/nonexistent/never-written")
    assert result.code == 2 and "needs an image folder" in result.err
    assert run_cli("train", "--lighting", "-1", "--print-config").code == 2
