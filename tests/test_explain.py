"""Grad-CAM (`resnets explain`, `Classifier.explain`): a trained network's map points at the
evidence, and the map is the one Selvaraju et al. 2017 define.

Oracles: synthetic images whose class is *where* a bright patch sits (so the evidence has a
known place), and Grad-CAM written out here from the paper's equations with plain hooks.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from resnets import create_model
from resnets.errors import InputError
from resnets.gradcam import default_layer, grad_cam
from resnets.infer import Classifier
from resnets.weights import WeightsMeta, save_weights

pytest.importorskip("pytorch_grad_cam")

SIZE, PATCH = 32, 6
QUADRANTS = ["top-left", "top-right", "bottom-left", "bottom-right"]


# A fixed dim tint per quadrant, the same in every image: the scene the patch sits in. It carries
# no class by itself, but lets the place of the patch be seen next to it. Without it, a network can
# only tell positions from the zero padding at the borders, and its evidence sits on the way to the
# border rather than on the patch.
TINTS = torch.tensor([[90, 30, 30], [30, 90, 30], [30, 30, 90], [70, 70, 30]])


def patch_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images (n, 3, 32, 32): dim noise over the quadrant tints, with one white 6x6 patch;
    the patch's quadrant (the class); and its top-left corner (n, 2) as (row, column)."""
    g = torch.Generator().manual_seed(seed)
    half = SIZE // 2
    images = torch.rand(n, 3, SIZE, SIZE, generator=g) * 40
    for q, tint in enumerate(TINTS):
        r, c = (q // 2) * half, (q % 2) * half
        images[:, :, r : r + half, c : c + half] += tint.view(1, 3, 1, 1)
    images = images.to(torch.uint8)
    labels = torch.randint(0, 4, (n,), generator=g)
    corners = torch.randint(1, half - PATCH, (n, 2), generator=g)
    corners[:, 0] += (labels // 2) * half
    corners[:, 1] += (labels % 2) * half
    for image, (r, c) in zip(images, corners.tolist()):
        image[:, r : r + PATCH, c : c + PATCH] = 255
    return images, labels, corners


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small CIFAR-style ResNet trained until it tells the quadrants apart, saved as our
    weights file with the preprocessing it was trained with."""
    torch.manual_seed(0)
    model = create_model("basic:1-1-1:8-16-32", num_classes=4)
    images, labels, _ = patch_images(512, seed=0)
    x = (images.float() / 255 - 0.5) / 0.25
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small trains fastest on one thread
    try:
        for step in range(120):
            idx = torch.arange(step * 32, step * 32 + 32) % len(x)
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), labels[idx]).backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    meta = WeightsMeta(
        model="basic:1-1-1:8-16-32",
        spec=model.spec.to_dict(),
        classes=QUADRANTS,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        input_size=SIZE,
    )
    path = tmp_path_factory.mktemp("explain") / "model.safetensors"
    save_weights(model, path, meta)
    return model, path


def test_a_trained_networks_map_peaks_on_the_patch_that_decides_its_class(trained):
    model, path = trained
    classifier = Classifier(path, device="cpu")
    images, labels, corners = patch_images(64, seed=1)
    found = classifier.explain(list(images))
    assert sum(QUADRANTS.index(e.label) == y for e, y in zip(found, labels.tolist())) >= 60  # it learned
    hits = 0
    for e, (r, c) in zip(found, corners.tolist()):
        assert e.heatmap.shape == (SIZE, SIZE) and 0 <= e.heatmap.min() and e.heatmap.max() <= 1
        peak_r, peak_c = divmod(int(e.heatmap.argmax()), SIZE)
        margin = 4  # one cell of the 8x8 map the last stage sees
        hits += r - margin <= peak_r < r + PATCH + margin and c - margin <= peak_c < c + PATCH + margin
        inside = e.heatmap[r : r + PATCH, c : c + PATCH].mean()
        assert inside > 1.5 * e.heatmap.mean()  # the patch is where the heat is
    assert hits >= 0.9 * len(found)
    torch.testing.assert_close(found[0].image, images[0].float() / 255, atol=1e-6, rtol=0)  # what it saw


def hand_grad_cam(model, x, layer, classes):
    """Selvaraju et al. 2017, eq. 1-2, from scratch: alpha_k = mean_ij dy^c/dA^k_ij,
    L = ReLU(sum_k alpha_k A^k), bilinearly resized to the input and scaled to 0..1 per image."""
    kept = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, out: kept.update(a=out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    scores = logits[torch.arange(len(x)), torch.tensor(classes)].sum()
    (grads,) = torch.autograd.grad(scores, kept["a"])
    alpha = grads.mean((2, 3), keepdim=True)
    cam = F.relu((alpha * kept["a"]).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin((1, 2), keepdim=True)
    cam = cam - low
    return (cam / (1e-7 + cam.amax((1, 2), keepdim=True))).detach()


@pytest.mark.parametrize("name, channels, layer", [("resnet20", 1, None), ("resnet18", 3, "layer3.1")])
def test_grad_cam_is_the_papers_map(name, channels, layer):
    torch.manual_seed(0)
    model = create_model(name, in_channels=channels).eval()
    x = torch.randn(2, channels, 40, 48)
    cams = grad_cam(model, x, layer=layer, classes=[3, 7])
    expected = hand_grad_cam(model, x, layer or default_layer(model), [3, 7])
    assert cams.maps.shape == (2, 40, 48) and cams.classes == [3, 7]
    torch.testing.assert_close(cams.maps, expected, atol=2e-3, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(cams.probabilities, model(x).softmax(1), atol=1e-5, rtol=0)
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    assert default_layer(model) == ("layer3" if name == "resnet20" else "layer4")


def test_cli_writes_a_heat_map_per_image_and_prints_the_class_explained(trained, tmp_path, run_cli):
    _, path = trained
    images, labels, _ = patch_images(3, seed=2)
    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(files[-1])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "maps"
    code, stdout, err = run_cli("explain", path, *files, tmp_path / "broken.png", "--out", out, "--json")
    assert code == 1 and "broken.png" in err  # the unreadable file is skipped, the rest explained
    rows = [json.loads(line) for line in stdout.splitlines()]
    _, predicted, _ = run_cli("predict", path, *files, "--json", "--topk", "1")
    top1 = [json.loads(line)["topk"][0] for line in predicted.splitlines()]
    for row, best, file in zip(rows, top1, files):
        assert row["file"] == str(file) and row["class"] == best["class"] and row["layer"] == "layer3"
        assert row["probability"] == pytest.approx(best["probability"], abs=1e-4)
        with Image.open(row["heatmap"]) as png:
            assert png.format == "PNG" and png.mode == "RGB" and png.size == (256, 256)
    assert rows[-1] == {"file": str(tmp_path / "broken.png"), "error": rows[-1]["error"]}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"img{i}-{r['class']}.png" for i, r in enumerate(rows[:3])
    )

    code, stdout, _ = run_cli("explain", path, files[0], "--out", out, "--class", "bottom-right")
    assert (
        code == 0 and "bottom-right (" in stdout.splitlines()[1] and (out / "img0-bottom-right.png").is_file()
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--class", "middle"],
            "no class 'middle'; the classes are top-left, top-right, bottom-left, bottom-right",
        ),
        (["--layer", "layer9"], "no layer 'layer9' in this network; try one of conv1, bn1"),
        (["--layer", "fc"], "layer 'fc' has no feature maps to weight; choose a convolutional layer"),
    ],
)
def test_cli_unknown_class_or_layer_is_one_line_before_any_file_is_written(
    trained, tmp_path, run_cli, args, message
):
    _, path = trained
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    code, _, err = run_cli("explain", path, tmp_path / "a.png", "--out", tmp_path / "maps", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "maps").exists()


def test_classifier_explain_names_its_errors(trained):
    _, path = trained
    classifier = Classifier(path, device="cpu")
    with pytest.raises(InputError, match="no class 7"):
        classifier.explain(torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), target=7)
    assert (
        classifier.explain(torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), target=2)[0].label == "bottom-left"
    )
