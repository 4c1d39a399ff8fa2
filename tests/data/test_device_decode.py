"""--decode-on-device: JPEGs decoded a batch at a time by torchvision.io.decode_jpeg in the main
process (nvJPEG on CUDA; here the same code on the CPU) give the batches the workers' PIL decoding
gives (the same decoded pixels; resized by torchvision instead of PIL, which agrees to a level or
two), send everything else through PIL, and skip a damaged file by name."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image

from resnets.data import make_loader
from resnets.data.folder import load_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of RGB JPEGs, plus a grayscale JPEG, a PNG, an EXIF-rotated JPEG and (in val)
    a truncated JPEG whose header still reads."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(5):
                pixels = (rng.random((40 + i, 52, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.jpg", quality=90)
            Image.fromarray(pixels).convert("L").save(d / "gray.jpg")
            Image.fromarray(pixels).save(d / "lossless.png")
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 degrees when shown
            Image.fromarray(pixels).save(d / "rotated.jpg", exif=exif)
    whole = (root / "val" / "cat" / "0.jpg").read_bytes()
    (root / "val" / "cat" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def batches(data, which, decode_on_device):
    loader = make_loader(data, which, batch_size=4, workers=0, decode_on_device=decode_on_device)
    xs, ys = zip(*loader.epoch(0))
    return torch.cat(xs), torch.cat(ys), loader.skipped


def test_device_decoding_gives_the_workers_batches_and_skips_the_same_file(folder, monkeypatch):
    data = load_folder(folder, input_size=32)
    x_pil, y_pil, skipped_pil = batches(data, "val", decode_on_device=False)
    decoded = []
    real = torchvision.io.decode_jpeg

    def spy(data, *args, **kwargs):
        decoded.extend(data if isinstance(data, list) else [data])
        return real(data, *args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", spy)
    x_dev, y_dev, skipped_dev = batches(data, "val", decode_on_device=True)
    # RGB JPEGs (5 + 5, and the truncated one, tried again alone) went to the device decoder;
    # the grayscale and rotated JPEGs and the PNGs did not.
    assert len({d.data_ptr() for d in decoded}) >= 11 and len(decoded) >= 11
    assert torch.equal(y_dev, y_pil)
    # Back on the 0..255 scale: the two resizes of the same decoded pixels differ by a level or two.
    levels = (x_dev - x_pil).abs() * torch.tensor(data.std).view(1, 3, 1, 1) * 255
    assert levels.max() <= 3 and levels.mean() < 0.5, (levels.max(), levels.mean())
    assert skipped_dev == skipped_pil == [str(folder / "val" / "cat" / "truncated.jpg")]


def test_training_with_decode_on_device_runs_and_reports_the_damaged_file(folder, tmp_path, run_cli):
    root = shutil.copytree(folder, tmp_path / "data")
    (Path(root) / "val" / "cat" / "truncated.jpg").rename(Path(root) / "train" / "cat" / "truncated.jpg")
    args = ["train", "--data", str(root), "--model", "basic:1-1-1:4-8-16", "--input-size", "32"]
    args += ["--batch-size", "4", "--epochs", "1", "--workers", "0", "--decode-on-device", "--json"]
    code, out, err = run_cli(*args, "--out", tmp_path / "run")
    assert code == 0, err
    assert "truncated.jpg" in out + err
