"""Image folders of small images are decoded once into memory and trained like in-memory data:
the same pixels PIL reads, said in one line, within --memory-budget; the run's recorded pipeline
is what evaluation of its files then gives back."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from resnets.data import load_data
from resnets.data.decode import decode_in_memory, parse_bytes, should_decode
from resnets.errors import DataError

TINY = [
    "--model",
    "basic:1-1-1:4-8-16",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--input-size",
    "8",
    "--val-split",
    "0.25",
]


@pytest.fixture
def small_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(12):
            pixels = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.jpg", quality=90)
    return tmp_path / "data"


def test_decoded_images_are_the_pixels_pil_reads(small_folder):
    data = load_data(str(small_folder), input_size=8, val_split=0.25)
    assert should_decode(data, "auto", "auto", 2**30) == (True, "")
    decoded = decode_in_memory(data)
    assert decoded.train.in_memory and decoded.val.in_memory and decoded.resize_size is None
    for split in (decoded.train, decoded.val):
        for image, file in zip(split.images, split.files):
            expected = np.asarray(Image.open(file).convert("RGB")).transpose(2, 0, 1)
            assert torch.equal(image, torch.from_numpy(expected.copy()))
    assert "decoded 24 images" in decoded.messages[-1]


def test_training_on_a_small_image_folder_goes_in_memory_and_eval_of_its_files_agrees(
    small_folder, tmp_path, run_cli
):
    run = tmp_path / "run"
    code, out, err = run_cli("train", "--data", small_folder, *TINY, "--out", run, "--json")
    assert code == 0, err
    assert sum("decoded 24 images" in line for line in err.splitlines()) == 1, err
    summary = json.loads(out)
    report = json.loads(run_cli("eval", run, "--json", "--device", "cpu").out)
    assert report["count"] == 6 and report["top1"] == summary["val_top1"]  # files read as decoded


def test_the_budget_is_kept_and_always_says_why_it_cannot(small_folder, tmp_path, run_cli):
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("500MB") == 500 * 10**6
    with pytest.raises(DataError, match="memory-budget"):
        parse_bytes("lots")
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", small_folder, *TINY, "--out", run, "--memory-budget", "1KB")
    assert code == 0, err
    assert "read from files every epoch" in err and "over the --memory-budget of 1000 bytes" in err, err
    args = [
        "train",
        "--data",
        small_folder,
        *TINY,
        "--out",
        tmp_path / "run2",
        "--decode-in-memory",
        "always",
    ]
    code, _, err = run_cli(*args, "--memory-budget", "1KB")
    assert code == 2 and err.count("\n") == 1 and "--decode-in-memory always" in err
    code, _, err = run_cli(*args, "--augment", "resized-crop")
    assert code == 2 and "needs image files" in err


def test_a_folder_of_larger_photos_stays_on_files_under_auto(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(tmp_path / name / f"{i}.png")
    data = load_data(str(tmp_path), input_size=8, val_split=2)
    assert should_decode(data, "auto", "auto", 2**30) == (False, "")
    assert should_decode(data, "always", "auto", 2**30) == (True, "")
