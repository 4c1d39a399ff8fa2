"""`resnets analyze responses` on real files nobody here made: a published CIFAR-10 ResNet-20
(akamaster/pytorch_resnet_cifar10, a DataParallel pickle read weights-only) on real CIFAR-10
test JPEGs, against forward hooks on the same network and pixels decoded and normalised here.

The data live in ../shared/data (or $RESNETS_SHARED_DATA); without them the test skips."""

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnets import create_model
from resnets.weights import WeightsMeta, save_weights

PER_CLASS = 5
IMAGENET_MEAN, IMAGENET_STD = (
    [0.485, 0.456, 0.406],
    [0.229, 0.224, 0.225],
)  # what the weights were trained with


def shared_data() -> Path | None:
    for candidate in (
        os.environ.get("RESNETS_SHARED_DATA"),
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data",
    ):
        if candidate and (Path(candidate) / "cifar10-jpg").is_dir():
            return Path(candidate)
    return None


SHARED = shared_data()
pytestmark = pytest.mark.skipif(
    SHARED is None, reason="no ../shared/data (set RESNETS_SHARED_DATA to its path)"
)


def unpack_test_images(folder: Path) -> list[tuple[Path, str]]:
    """The first PER_CLASS test JPEGs of each class, as an ImageFolder (train/ holds the same
    files: the folder loader wants a training split, and analyze only reads the test one)."""
    picked = []
    with tarfile.open(SHARED / "cifar10-jpg" / "test.tar.gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        counts: dict[str, int] = {}
        for m in members:
            label = Path(m.name).parent.name
            if counts.get(label, 0) < PER_CLASS:
                counts[label] = counts.get(label, 0) + 1
                picked.append(m)
        tar.extractall(folder, members=picked, filter="data")
    test = next(p for p in folder.rglob("test") if p.is_dir())
    for image in test.rglob("*.jpg"):
        (folder / "data" / "train" / image.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / "data" / "test" / image.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / "data" / "train" / image.parent.name / image.name).write_bytes(image.read_bytes())
        (folder / "data" / "test" / image.parent.name / image.name).write_bytes(image.read_bytes())
    return sorted((p, p.parent.name) for p in (folder / "data" / "test").rglob("*.jpg"))


def test_responses_of_the_published_resnet20_on_real_cifar_test_jpegs(tmp_path, run_cli):
    (checkpoint,) = (SHARED / "pretrained-cifar").glob("resnet20-*.th")
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")["state_dict"]
    state = {k.removeprefix("module.").replace("linear.", "fc."): v for k, v in state.items()}
    model = create_model("resnet20")
    model.load_state_dict(state)
    model.eval()
    images = unpack_test_images(tmp_path)
    classes = sorted({label for _, label in images})
    meta = WeightsMeta(
        model="resnet20",
        spec=model.spec.to_dict(),
        classes=classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=32,
    )
    save_weights(model, tmp_path / "resnet20.safetensors", meta)

    result = run_cli(
        "analyze", "responses", tmp_path / "resnet20.safetensors", "--data", tmp_path / "data",
        "--json", "--device", "cpu", "--workers", "0", "--out", tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["images"] == 10 * PER_CLASS and len(report["layers"]) == 19

    pixels = np.stack([np.asarray(Image.open(path).convert("RGB")) for path, _ in images])
    x = torch.as_tensor(pixels).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    outputs = {}

    def keep(name):
        def hook(module, inputs, out):  # returns None: the output goes on unchanged
            outputs[name] = out.clone()

        return hook

    for layer in report["layers"]:
        model.get_submodule(layer["name"]).register_forward_hook(keep(layer["name"]))
    with torch.no_grad():
        logits = model(x)
    correct = (logits.argmax(1) == torch.tensor([classes.index(label) for _, label in images])).float().mean()
    assert correct >= 0.8  # really the trained network, on the right pixels (91.7% published)
    for layer in report["layers"]:
        out = outputs[layer["name"]].double()
        assert layer["std"] == pytest.approx(out.std().item(), rel=1e-5)
        assert layer["mean"] == pytest.approx(out.mean().item(), rel=1e-4, abs=1e-6)
