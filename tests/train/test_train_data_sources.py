"""Training runs end to end on each data source: a CIFAR python folder and an ImageFolder with
a corrupt JPEG and odd image modes; and mistakes are one-line errors before training."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from cifar_format import write_cifar10  # noqa: E402

TINY = ["--model", "basic:1-1-1:4-8-16", "--epochs", "1"]


def test_a_cifar10_python_folder_trains_for_an_epoch(tmp_path, run_cli):
    written = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=8)
    out = tmp_path / "run"
    code, _, _ = run_cli(
        "train",
        "--data",
        tmp_path / "cifar-10-batches-py",
        *TINY,
        "--batch-size",
        "8",
        "--out",
        out,
        "--json",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"] == "cifar10" and summary["epochs"] == 1
    record = json.loads((out / "config.json").read_text())
    assert record["data"]["train_images"] == 40 and record["data"]["classes"] == written["names"]
    assert record["data"]["input_size"] == 32


def write_image_folder(root: Path) -> Path:
    """Two classes in train/ and val/, in every awkward format, and one truncated JPEG."""
    rng = np.random.default_rng(0)

    def noise(mode, size=20):
        if mode == "I;16":
            return Image.fromarray(rng.integers(0, 65536, (size, size), dtype=np.uint16))
        rgb = Image.fromarray(rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8))
        return rgb.convert(mode)

    for split, n in (("train", 6), ("val", 2)):
        for c in ("circle", "square"):
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                mode = ["RGB", "L", "P", "RGBA", "CMYK", "I;16"][i % 6]
                ext = "jpg" if mode in ("RGB", "CMYK", "L") else "png"
                noise(mode).save(folder / f"{i}.{ext}")
    good = (root / "train" / "circle" / "0.jpg").read_bytes()
    (root / "train" / "circle" / "broken.jpg").write_bytes(good[: len(good) // 3])
    return root / "train" / "circle" / "broken.jpg"


def test_an_image_folder_with_odd_modes_and_a_corrupt_jpeg_trains_and_names_the_skipped_file(
    tmp_path, run_cli
):
    broken = write_image_folder(tmp_path / "images")
    out = tmp_path / "run"
    args = [
        "train",
        "--data",
        str(tmp_path / "images"),
        *TINY,
        "--input-size",
        "16",
        "--batch-size",
        "4",
        "--workers",
        "2",
    ]
    code, _, err = run_cli(*args, "--out", out)
    assert code == 0
    assert f"skipped 1 unreadable image(s) this epoch: {broken}" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_images"] == [str(broken)]
    meta_classes = json.loads((out / "config.json").read_text())["data"]["classes"]
    assert meta_classes == ["circle", "square"]


def test_ten_crop_evaluation_scores_folder_runs_at_the_end(tmp_path, run_cli):
    write_image_folder(tmp_path / "images")
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "images"), *TINY, "--input-size", "16", "--batch-size", "4"]
    assert run_cli(*args, "--workers", "0", "--eval-crops", "10", "--out", out).code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["val_top1_10crop"] <= 1 and summary["val_top5_10crop"] == 1.0  # 2 classes
    result = run_cli("eval", out, "--workers", "0", "--json")
    assert result.code == 0
    report = json.loads(result.out)
    assert report["top1_10crop"] == summary["val_top1_10crop"] and report["top1"] == summary["val_top1"]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: (root / "train" / "triangle").mkdir(), "class 'triangle' has no images"),
    ],
)
def test_folder_mistakes_stop_before_training_with_one_line(tmp_path, run_cli, setup, message):
    write_image_folder(tmp_path / "images")
    setup(tmp_path / "images")
    out = tmp_path / "run"
    code, _, err = run_cli("train", "--data", tmp_path / "images", *TINY, "--out", out)
    assert code == 2
    err = err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_unavailable_device_and_missing_tensorboard_are_one_line_errors(tmp_path, run_cli):
    import torch

    if not torch.cuda.is_available():
        code, _, err = run_cli("train", "--device", "cuda", "--out", tmp_path / "a")
        assert code == 2 and "CUDA is not available" in err
    with pytest.MonkeyPatch.context() as patch:  # as if tensorboard were not installed
        patch.setitem(sys.modules, "tensorboard", None)
        code, _, err = run_cli("train", "--tensorboard", "--out", tmp_path / "b")
        assert code == 2 and "pip install tensorboard" in err
        assert not (tmp_path / "b").exists()
    code, _, err = run_cli("train", "--data", tmp_path / "nowhere", "--out", tmp_path / "c")
    assert code == 2 and "no dataset" in err


def test_tensorboard_logs_every_epochs_metrics_at_its_step(tmp_path, run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = ["--model", "basic:1-1-1:4-8-16", "--data", "synthetic", "--synthetic-count", "96"]
    args += ["--synthetic-classes", "4", "--input-size", "8", "--batch-size", "16", "--epochs", "2"]
    assert run_cli("train", *args, "--tensorboard", "--out", run).code == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    for key in ("lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "images_per_second"):
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [int(r["step"]) for r in rows], key
        assert [e.value for e in logged] == pytest.approx([float(r[key]) for r in rows], rel=1e-5), key


def test_paper_cifar_trains_on_every_training_image_and_validates_on_the_test_set(tmp_path):
    """The reported numbers are of networks trained on all 50k images and tested on the 10k test
    set; the 45k/5k split that chose the schedule is `val_split=5000` (here 20 of 50)."""
    from resnets.train import resolve_recipe
    from resnets.train.build import load_training_data

    written = write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=10, test=20)
    data = load_training_data(resolve_recipe("paper-cifar", data=str(tmp_path)))
    assert (len(data.train), len(data.val)) == (50, 20)
    assert data.val.labels.tolist() == written["test_labels"]
    held = load_training_data(resolve_recipe("paper-cifar", data=str(tmp_path), val_split=20))
    assert (len(held.train), len(held.val)) == (30, 20)
    assert set(held.val.labels.tolist()) <= set(written["train_labels"])


def test_subsets_are_fixed_stratified_shares_of_each_split_and_the_mean_is_of_the_kept_images():
    from resnets.data import load_data
    from resnets.train import resolve_recipe
    from resnets.train.build import load_training_data

    config = resolve_recipe("default", data="synthetic", synthetic_count=200, synthetic_classes=4)
    whole = load_data("synthetic", synthetic_count=200, synthetic_classes=4)
    small = config.replace(train_subset=40, val_subset=20, normalize="per-pixel-mean")
    data = load_training_data(small)
    assert (len(data.train), len(data.val)) == (40, 20)
    assert data.train.labels.bincount().tolist() == [10, 10, 10, 10]  # every class its share
    assert data.val.labels.bincount().tolist() == [5, 5, 5, 5]
    # drawn from their own splits, the same ones every time (resume and eval see them again)
    rows = {tuple(im.flatten().tolist()) for im in whole.train.images}
    assert all(tuple(im.flatten().tolist()) in rows for im in data.train.images)
    assert torch.equal(load_training_data(small).train.images, data.train.images)
    torch.testing.assert_close(data.mean_image, data.train.images.double().mean(0).float() / 255)
    bigger = load_training_data(config.replace(train_subset=10_000))  # more than there is: all of it
    assert len(bigger.train) == len(whole.train)
