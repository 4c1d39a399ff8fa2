"""ImageFolder datasets: every image mode becomes RGB, and folder mistakes stop training early."""

import numpy as np
import pytest
import torch
from PIL import Image

from resnets.data import load_data
from resnets.data.images import open_rgb
from resnets.errors import DataError


def save(path, image, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


def test_grayscale_palette_rgba_cmyk_and_16bit_images_decode_to_8bit_rgb(tmp_path):
    gray = save(tmp_path / "g.png", Image.new("L", (4, 4), 100))
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30])
    pal = save(tmp_path / "p.png", palette)
    rgba = save(tmp_path / "a.png", Image.new("RGBA", (4, 4), (1, 2, 3, 255)))
    clear = save(tmp_path / "clear.png", Image.new("RGBA", (4, 4), (1, 2, 3, 0)))
    cmyk = save(tmp_path / "c.jpg", Image.new("CMYK", (4, 4), (0, 255, 0, 0)), quality=100)
    sixteen = save(tmp_path / "s.png", Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)))
    assert Image.open(sixteen).mode.startswith("I")  # really 16-bit on disk
    for path in (gray, pal, rgba, cmyk, sixteen):
        assert open_rgb(str(path)).mode == "RGB"
    assert open_rgb(str(gray)).getpixel((0, 0)) == (100, 100, 100)
    assert open_rgb(str(pal)).getpixel((0, 0)) == (10, 200, 30)
    assert open_rgb(str(rgba)).getpixel((0, 0)) == (1, 2, 3)
    # Transparent pixels show what a viewer shows: the (white) background, not the hidden colour.
    assert open_rgb(str(clear)).getpixel((0, 0)) == (255, 255, 255)
    assert open_rgb(str(cmyk)).getpixel((0, 0)) == pytest.approx((255, 0, 255), abs=3)  # magenta
    # 16-bit mid-grey (32896 / 65535 = 0.502) stays mid-grey instead of clipping to white.
    assert open_rgb(str(sixteen)).getpixel((0, 0)) == (128, 128, 128)


def make_folder(root, classes=("cat", "dog"), per_class=3, size=12):
    for c, name in enumerate(classes):
        for i in range(per_class):
            save(root / name / f"{i}.png", Image.new("RGB", (size, size), (40 * c, 10 * i, 90)))
    return root


def test_train_and_val_folders_share_the_training_class_order(tmp_path):
    make_folder(tmp_path / "train", classes=("a", "b", "c"))
    make_folder(tmp_path / "val", classes=("a", "c"), per_class=1)
    data = load_data(str(tmp_path), input_size=8)
    assert data.classes == ["a", "b", "c"]
    assert data.val.labels.tolist() == [0, 2]
    assert len(data.train) == 9 and data.resize_size == 9  # 8 / 0.875


def test_single_folder_needs_a_val_split_and_gets_a_stratified_one(tmp_path):
    make_folder(tmp_path, per_class=10)
    with pytest.raises(DataError, match="--val-split"):
        load_data(str(tmp_path), input_size=8)
    data = load_data(str(tmp_path), input_size=8, val_split=0.2)
    assert sorted(data.val.labels.tolist()) == [0, 0, 1, 1]


def test_a_hidden_folder_is_no_class_and_is_named_as_passed_over(tmp_path):
    """`.ipynb_checkpoints` beside the class folders is passed over as every walk passes hidden
    folders over (predict too), and said, not made a class."""
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", per_class=1)
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    data = load_data(str(tmp_path), input_size=8)
    plain = load_data(str(tmp_path / "train"), input_size=8, val_split=0.5)
    assert data.classes == plain.classes and ".ipynb_checkpoints" not in data.classes
    assert [(s.path.name, s.reason) for s in data.passed_over] == [(".ipynb_checkpoints", "hidden")]


def test_empty_class_and_no_classes_are_errors_naming_the_folder(tmp_path):
    make_folder(tmp_path / "a" / "train")
    (tmp_path / "a" / "train" / "empty").mkdir()
    with pytest.raises(DataError, match="class 'empty' has no images"):
        load_data(str(tmp_path / "a"), input_size=8, val_split=0.5)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("no class folders here")
    with pytest.raises(DataError, match="no class folders"):
        load_data(str(tmp_path / "b"), input_size=8, val_split=0.5)


def test_hidden_files_and_non_images_inside_classes_are_ignored(tmp_path):
    make_folder(tmp_path, per_class=2)
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "cat" / "readme.txt").write_text("x")
    data = load_data(str(tmp_path), input_size=8, val_split=0.5)
    assert len(data.train) + len(data.val) == 4
    assert torch.isfinite(torch.tensor(data.mean)).all()
