"""Promise 17: nothing fails half-way. What a run needs is checked once its data is loaded and its
network built, before anything is written: an input smaller than the network's stride, a
micro-batch BatchNorm cannot train on, an --out that cannot be a run directory. Each is one line
naming the flag to change, and no run directory exists afterwards. Batches of one image never
reach a BatchNorm that trains."""

import pytest
import torch
from torch import nn

from resnets import create_model
from resnets.train import resolve_recipe, train
from resnets.train.step import build_step

SYNTHETIC = ["--data", "synthetic", "--synthetic-count", "40", "--synthetic-classes", "2", "--epochs", "1"]
# A CIFAR-layout network downsamples by 4: at 4x4 inputs its last stage sees 1x1 maps.
ONE_BY_ONE = ["--model", "basic:1-1-1:4-8-16", *SYNTHETIC, "--input-size", "4"]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model", "resnet18"],  # on the default digits, 16x16
            "resnet18 downsamples by 32, so it needs inputs of at least 32x32, but digits trains at "
            "16x16: pass --input-size 32 (or more; the images are resampled), or choose a network made "
            "for small images such as resnet20",
        ),
        (
            ["--model", "resnet50", *SYNTHETIC, "--input-size", "8"],
            "resnet50 downsamples by 32, so it needs inputs of at least 32x32, but synthetic trains at 8x8",
        ),
        (
            [*ONE_BY_ONE, "--batch-size", "1"],
            "--batch-size 1 leaves 1 image(s) per micro-batch (1 process(es) x 1 accumulation step(s)), but "
            "basic:1-1-1:4-8-16 reaches a 1x1 map at 4x4 inputs and BatchNorm cannot train on a single "
            "value per channel: the smallest micro-batch is 2, so use --batch-size 2 or more",
        ),
        (
            [*ONE_BY_ONE, "--batch-size", "4", "--accum-steps", "4"],
            "--batch-size 4 leaves 1 image(s) per micro-batch (1 process(es) x 4 accumulation step(s)), "
            "but basic:1-1-1:4-8-16 reaches a 1x1 map at 4x4 inputs and BatchNorm cannot train on a single "
            "value per channel: the smallest micro-batch is 2, so use --batch-size 8 or more",
        ),
        (["--out", "{file}"], "--out {file} is a file, not a folder; name a new folder for the run"),
        (
            ["--out", "{file}/run"],
            "--out {file}/run: {file} is a file, so the run directory cannot be made there",
        ),
        (
            ["--freeze", "stem,layer9"],
            "--freeze: no part layer9 in this network; its parts are stem, layer1, layer2, layer3, head",
        ),
        (
            ["--freeze", "stem,layer1,layer2,layer3,head"],
            "--freeze stem,layer1,layer2,layer3,head leaves nothing to train",
        ),
    ],
)
def test_what_a_run_cannot_do_is_one_line_before_anything_is_written(
    tmp_path, monkeypatch, run_cli, args, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    args = [a.replace("{file}", str(tmp_path / "a-file")) for a in args]
    code, out, err = run_cli("train", *args)
    assert (code, out) == (2, "")
    assert err.startswith(f"resnets train: error: {message.replace('{file}', str(tmp_path / 'a-file'))}"), err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no runs/, no config.json


def test_frozen_batchnorm_trains_on_single_images_at_1x1_and_two_images_are_enough_otherwise(
    tmp_path, run_cli
):
    code, _, err = run_cli(
        "train", *ONE_BY_ONE, "--batch-size", "1", "--freeze-bn", "--out", tmp_path / "frozen"
    )
    assert code == 0, err  # BatchNorm in eval mode normalises with its running statistics
    code, _, err = run_cli("train", *ONE_BY_ONE, "--batch-size", "2", "--out", tmp_path / "two")
    assert code == 0, err


def test_a_remainder_of_one_image_never_reaches_batchnorm(tmp_path, monkeypatch):
    """33 training images in batches of 4 leave one over each epoch: it is not a batch of its own."""
    seen = []
    real = nn.BatchNorm2d.forward

    def spy(self, x):
        if self.training:
            seen.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(nn.BatchNorm2d, "forward", spy)
    config = resolve_recipe(
        "default",
        model="basic:1-1-1:4-8-16",
        data="synthetic",
        synthetic_count=41,
        synthetic_classes=2,
        val_split=8,
        input_size=4,
        batch_size=4,
        epochs=2,
    )
    summary = train(config, tmp_path / "run")
    assert summary["steps"] == 2 * (33 // 4)
    assert seen and set(seen) == {4}


def test_a_step_whose_batch_is_too_small_for_batchnorm_is_dropped_not_fed_to_it():
    """What an unreadable file can leave of a folder batch: one image, at a 1x1 map."""
    config = resolve_recipe("default", model="basic:1-1-1:4-8-16", input_size=4)
    model = create_model("basic:1-1-1:4-8-16", num_classes=2)
    step = build_step(config, model, torch.device("cpu"), num_classes=2, in_memory=False, min_batch=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats, applied = step([(torch.randn(1, 3, 4, 4), torch.tensor([1]))], 1)
    assert not applied and stats.tolist() == [0.0, 0.0, 0.0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing moved
    stats, applied = step([(torch.randn(2, 3, 4, 4), torch.tensor([1, 0]))], 1)
    assert applied and stats[2] == 2


def test_an_offline_download_says_what_from_where_and_where_to_put_it_by_hand(tmp_path, monkeypatch, run_cli):
    import urllib.error

    import torchvision.datasets.utils as tv_utils

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("train", "--data", "cifar10", "--download", "--data-dir", tmp_path / "data")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(
        "resnets train: error: could not download cifar10 (cifar-10-python.tar.gz, md5 "
        "c58f30108f718f92721af3b95e74349a) from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: "
    )
    assert (
        f"unpack it into {tmp_path / 'data'}, so that {tmp_path / 'data' / 'cifar-10-batches-py'} holds"
        in err
    )
    assert not (tmp_path / "runs").exists()
