"""Per-pixel mean subtraction (He et al. 2015, sec. 3.4 and 4.2): what the network sees in
training, what the weights record, and what predict and eval do with it, against pixels
computed here by hand from the raw uint8 images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from resnets.data import load_data
from resnets.data.transforms import folder_train_transform
from resnets.infer import Classifier
from resnets.preprocess import Preprocess, eval_transform
from resnets.train import resolve_recipe
from resnets.train.build import load_training_data

TINY = [
    "--model", "basic:1-1-1:4-8-16",
    "--data", "synthetic",
    "--synthetic-count", "96",
    "--synthetic-classes", "4",
    "--input-size", "8",
    "--batch-size", "16",
    "--epochs", "1",
    "--json",
]  # fmt: skip


def test_the_paper_recipes_subtract_the_per_pixel_mean_and_the_others_keep_per_channel_stats():
    assert resolve_recipe("paper-cifar").normalize == "per-pixel-mean"
    assert resolve_recipe("paper-imagenet").normalize == "per-pixel-mean"
    assert resolve_recipe("default").normalize == "per-channel"
    assert resolve_recipe("modern").normalize == "per-channel"


def test_training_batches_are_the_images_minus_the_training_sets_mean_image():
    config = resolve_recipe(
        "default", data="synthetic", synthetic_count=96, input_size=8, normalize="per-pixel-mean"
    )
    data = load_training_data(config)
    raw = load_data("synthetic", synthetic_count=96, input_size=8)  # the same images, unnormalised
    train = raw.train.images.numpy().astype(np.float64) / 255
    mean_image = train.mean(0)  # (C, H, W): one mean per pixel and channel
    assert np.abs(mean_image - mean_image.mean((1, 2), keepdims=True)).max() > 0.01  # not per channel
    np.testing.assert_allclose(data.mean_image.numpy(), mean_image, atol=1e-6)
    from resnets.data import make_loader

    (x, y), *_ = make_loader(data, "val", batch_size=1000).epoch(0)
    expected = raw.val.images.numpy() / 255 - mean_image
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)
    assert y.tolist() == raw.val.labels.tolist()


def test_the_weights_record_the_mean_image_and_predict_subtracts_it(tmp_path, run_cli):
    result = run_cli("train", *TINY, "--normalize", "per-pixel-mean", "--out", tmp_path / "run")
    assert result.code == 0, result.err
    with safe_open(str(tmp_path / "run" / "model.safetensors"), "pt") as f:
        header = f.metadata()
    recorded = json.loads(header["resnets.preprocess"])  # the evaluation pipeline, as a record
    assert recorded["normalize"] == "per-pixel-mean"
    raw = load_data("synthetic", synthetic_count=96, synthetic_classes=4, input_size=8)
    mean_image = raw.train.images.numpy().mean(0) / 255
    np.testing.assert_allclose(np.array(recorded["mean_image"]), mean_image, atol=1e-6)
    # A reader that knows only mean/std gets the mean image's channel means and no scaling.
    np.testing.assert_allclose(json.loads(header["resnets.mean"]), mean_image.mean((1, 2)), atol=1e-6)
    assert json.loads(header["resnets.std"]) == [1.0, 1.0, 1.0]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["data"]["normalize"] == "per-pixel-mean"

    clf = Classifier(tmp_path / "run", device="cpu")
    images = raw.val.images[:5]
    by_hand = torch.as_tensor(images.numpy() / 255 - mean_image, dtype=torch.float32)
    net = clf.model  # the served network: compare logits through it on hand-made inputs
    expected = torch.softmax(net(by_hand), 1)
    torch.testing.assert_close(clf.probabilities(images), expected, rtol=1e-4, atol=1e-5)
    # eval on data named anew (not the run's own loading) subtracts the recorded mean image too
    summary = json.loads(result.out)
    report = run_cli("eval", tmp_path / "run", "--data", "synthetic", "--json", "--device", "cpu")
    assert report.code == 0, report.err
    assert json.loads(report.out)["loss"] == pytest.approx(summary["val_loss"], rel=1e-4)


def test_folder_pipelines_subtract_the_mean_image_instead_of_normalising(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    mean_image = torch.as_tensor(rng.random((3, 12, 12)), dtype=torch.float32)
    record = Preprocess((12, 12), normalize="per-pixel-mean", mean_image=mean_image)
    evaluated = eval_transform(record)(image)
    expected = pixels.transpose(2, 0, 1) / 255 - mean_image.numpy()
    np.testing.assert_allclose(evaluated.numpy(), expected, atol=1e-6)
    trained = folder_train_transform(
        "pad-crop", 12, pad=0, flip=False, mean=(0.5,) * 3, std=(0.2,) * 3, mean_image=mean_image
    )(image)
    np.testing.assert_allclose(trained.numpy(), expected, atol=1e-6)


def test_an_unknown_normalisation_is_a_one_line_error(run_cli):
    result = run_cli("train", "--normalize", "per-image", "--print-config")
    assert result.code == 2 and "normalize must be one of per-channel, per-pixel-mean" in result.err


def test_a_folder_trained_with_pad_crop_is_evaluated_whole_and_its_mean_image_is_of_whole_images(tmp_path):
    """The CIFAR recipe on an ImageFolder of 8x8 images: the network trains on whole images, so
    it is validated on whole images (no 0.875 zoom) minus the mean of the whole training images."""
    from resnets.data import make_loader

    rng = np.random.default_rng(0)
    pixels = {}
    for split, count in (("train", 6), ("val", 2)):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(count):
                array = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(array).save(tmp_path / split / label / f"{i}.png")
                pixels.setdefault(split, []).append(array.transpose(2, 0, 1) / 255)
    config = resolve_recipe(
        "paper-cifar", data=str(tmp_path), input_size=8, model="basic:1-1-1:4-8-16", workers=0
    )
    data = load_training_data(config)
    mean_image = np.mean(pixels["train"], axis=0)
    np.testing.assert_allclose(data.mean_image.numpy(), mean_image, atol=1e-6)
    (x, y), *_ = make_loader(data, "val", batch_size=100, workers=0).epoch(0)
    np.testing.assert_allclose(x.numpy(), np.array(pixels["val"]) - mean_image, atol=1e-6)
    assert data.resize_size is None  # recorded with the weights: predict resizes to 8, no zoom


def test_a_decoded_folder_subtracts_the_mean_of_all_its_training_images_and_eval_agrees(tmp_path, run_cli):
    """A folder of small images decoded into memory: the mean image is of every training image
    (not of a 256-image sample), the record keeps unit std, and eval of the run's own split gives
    the validation loss training logged (the same pixels in both)."""
    rng = np.random.default_rng(0)
    train = []
    for split, count in (("train", 150), ("val", 4)):
        for label in ("a", "b"):
            (tmp_path / "data" / split / label).mkdir(parents=True)
            for i in range(count):
                array = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(array).save(tmp_path / "data" / split / label / f"{i}.png")
                if split == "train":
                    train.append(array.transpose(2, 0, 1) / 255)
    run = tmp_path / "run"
    args = [*TINY[:2], "--data", tmp_path / "data", "--input-size", "8", "--batch-size", "30"]
    result = run_cli("train", *args, "--epochs", "1", "--json", "--normalize", "per-pixel-mean", "--out", run)
    assert result.code == 0, result.err
    assert "decoded" in result.err
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        recorded = json.loads(f.metadata()["resnets.preprocess"])
    np.testing.assert_allclose(np.array(recorded["mean_image"]), np.mean(train, axis=0), atol=1e-6)
    assert recorded["std"] in (None, [1.0, 1.0, 1.0])
    report = run_cli("eval", run, "--json", "--device", "cpu")
    assert report.code == 0, report.err
    assert json.loads(report.out)["loss"] == pytest.approx(json.loads(result.out)["val_loss"], rel=1e-4)
