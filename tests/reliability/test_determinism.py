"""Promise 6: two CPU runs with the same seed, with images decoded and augmented in DataLoader
worker processes, end with bit-identical weights; a different seed gives different weights."""

import ast
import base64
import json
import random

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from resnets.train import resolve_recipe, train


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    gen = torch.Generator().manual_seed(0)
    for c, name in enumerate(("circle", "square", "stripe")):
        (root / name).mkdir()
        for i in range(8):
            pixels = torch.randint(0, 256, (12, 12, 3), generator=gen, dtype=torch.uint8) // (c + 1)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    return root


def weights_after_training(folder, out, seed):
    config = resolve_recipe(
        "default",
        model="basic:1-1-1:4-8-16",
        data=str(folder),
        val_split=6,
        input_size=8,
        batch_size=6,
        epochs=1,
        workers=2,  # augmentation (random resized crop, flips) runs in worker processes
        seed=seed,
        deterministic=True,
        threads=1,
    )
    train(config, out)
    return load_file(out / "model.safetensors")


def test_same_seed_with_data_workers_gives_bit_identical_weights_and_another_seed_does_not(
    tmp_path, image_folder
):
    first = weights_after_training(image_folder, tmp_path / "a", seed=3)
    second = weights_after_training(image_folder, tmp_path / "b", seed=3)
    other = weights_after_training(image_folder, tmp_path / "c", seed=4)
    assert first.keys() == second.keys() == other.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


def test_python_rng_state_saved_does_not_depend_on_what_the_process_imported_before(tmp_path, monkeypatch):
    """Libraries imported on first use may draw from Python's RNG at import time (rich, which
    scikit-learn imports, does): a fresh process would then save another RNG state than one that
    had imported them already, and its resume would not be bit-identical. The oracle: nothing in
    training draws from Python's RNG, so the saved state is that of random.seed(seed)."""
    from resnets.train import build

    real = build.load_training_data

    def load_drawing_like_an_import(config, *args):
        random.getrandbits(24)  # as rich's style module does when first imported
        return real(config, *args)

    monkeypatch.setattr(build, "load_training_data", load_drawing_like_an_import)
    config = resolve_recipe(
        "default", model="basic:1-1-1:4-8-16", data="synthetic", synthetic_count=64,
        synthetic_classes=4, input_size=8, batch_size=16, epochs=1, seed=7,
    )  # fmt: skip
    train(config, tmp_path / "run")
    latest = json.loads((tmp_path / "run" / "checkpoint" / "latest.json").read_text())
    saved = ast.literal_eval(base64.b64decode(latest["rng_python"]).decode())
    assert saved == random.Random(7).getstate()
