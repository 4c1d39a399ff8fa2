"""The one walk over image folders (data/walk.py), as training folders and `resnets predict` use it:
one list of image extensions, os.walk's sorted top-down order, hidden entries passed over, each
real file once and no link loops, and everything passed over reported with its reason."""

import os
from pathlib import Path

import pytest
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

import resnets.data.walk as walk_module
from resnets.cli.predict import image_files
from resnets.data import load_data
from resnets.data.images import IMAGE_EXTENSIONS, open_rgb
from resnets.data.walk import (
    BROKEN_LINK,
    DUPLICATE,
    FOLDER_SEEN,
    HIDDEN,
    LINK_LOOP,
    NOT_AN_IMAGE,
    UNREADABLE,
    ImageWalker,
    Skipped,
    describe_skipped,
    walk_images,
)


def image(path: Path, shade: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 6), (shade, 20, 200)).save(path)
    return path


def reasons(skipped: list[Skipped]) -> dict[str, str]:
    return {str(s.path): s.reason for s in skipped}


def test_files_come_in_os_walks_sorted_top_down_order_and_the_rest_is_reported(tmp_path):
    for name in ("b.png", "a.jpg", "sub2/c.png", "sub1/d.PNG", "sub1/deeper/e.gif", ".hidden/f.png"):
        image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    files, skipped = walk_images(tmp_path)
    expected = ["a.jpg", "b.png", "sub1/d.PNG", "sub1/deeper/e.gif", "sub2/c.png"]
    assert files == [tmp_path / name for name in expected]
    # The oracle for the order: os.walk top-down with sorted folders and files.
    walked = []
    for root, dirs, names in os.walk(tmp_path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        walked += [Path(root) / n for n in sorted(names) if (Path(root) / n) in files]
    assert walked == files
    assert reasons(skipped) == {
        str(tmp_path / ".DS_Store"): HIDDEN,
        str(tmp_path / ".hidden"): HIDDEN,
        str(tmp_path / "notes.txt"): NOT_AN_IMAGE,
    }


def test_every_extension_torchvision_reads_is_ours_and_a_gif_trains_as_it_predicts(tmp_path):
    assert set(IMG_EXTENSIONS) <= set(IMAGE_EXTENSIONS) and ".gif" in IMAGE_EXTENSIONS
    for c, name in enumerate(("a", "b")):
        image(tmp_path / name / "1.png", 10 * c)
        image(tmp_path / name / "2.gif", 100 + 10 * c)
    gifs = {str(p) for p in tmp_path.rglob("*.gif")}
    data = load_data(str(tmp_path), input_size=6, val_split=0.5)
    assert gifs <= set(data.train.files + data.val.files)
    assert gifs <= {str(p) for p in image_files([tmp_path])[0]}
    assert open_rgb(next(iter(gifs))).size == (6, 6)


def test_a_link_to_a_parent_folder_is_not_followed_and_training_counts_each_file_once(tmp_path):
    for c in ("a", "b"):
        image(tmp_path / c / "x.png")
        image(tmp_path / c / "inner" / "y.png")
    (tmp_path / "a" / "inner" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    files, skipped = walk_images(tmp_path / "a")
    assert files == [tmp_path / "a" / "x.png", tmp_path / "a" / "inner" / "y.png"]
    assert reasons(skipped) == {str(tmp_path / "a" / "inner" / "up"): LINK_LOOP}
    data = load_data(str(tmp_path), input_size=6, val_split=2)
    assert len(data.train) + len(data.val) == 4  # following the loop would count 'a' dozens of times
    assert [s.reason for s in data.passed_over] == [LINK_LOOP]


def test_a_link_from_a_class_to_the_dataset_or_a_later_class_brings_no_other_class_in(tmp_path):
    """cat/up -> the dataset folder and cat/dogs -> dog: walked from 'cat' (first), both would list
    dog's images as cats (and then 'dog has no images'); predict's walk of the dataset calls the
    first a loop."""
    for c in ("cat", "dog"):
        for i in range(2):
            image(tmp_path / c / f"{i}.png", 10 * i)
    (tmp_path / "cat" / "up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "cat" / "dogs").symlink_to(tmp_path / "dog", target_is_directory=True)
    data = load_data(str(tmp_path), input_size=6, val_split=2)
    labelled = dict(
        zip(data.train.files + data.val.files, data.train.labels.tolist() + data.val.labels.tolist())
    )
    assert labelled == {
        str(tmp_path / c / f"{i}.png"): k for k, c in enumerate(("cat", "dog")) for i in range(2)
    }
    assert reasons(data.passed_over) == {
        str(tmp_path / "cat" / "dogs"): FOLDER_SEEN,
        str(tmp_path / "cat" / "up"): LINK_LOOP,
    }
    assert data.messages == [
        f"{tmp_path}: passed over {describe_skipped(data.passed_over)}"
    ]  # said, as predict says it


def test_a_file_linked_into_another_class_keeps_its_own_folders_class(tmp_path):
    """cat/z.png -> dog/0.png: walked from 'cat' first, the dog image would be trained as a cat
    and the real dog/0.png called the duplicate. The real file's folder decides its class."""
    for c in ("cat", "dog"):
        for i in range(2):
            image(tmp_path / c / f"{i}.png", 10 * i)
    (tmp_path / "cat" / "z.png").symlink_to(tmp_path / "dog" / "0.png")
    data = load_data(str(tmp_path), input_size=6, val_split=2)
    labelled = dict(
        zip(data.train.files + data.val.files, data.train.labels.tolist() + data.val.labels.tolist())
    )
    assert labelled == {
        str(tmp_path / c / f"{i}.png"): k for k, c in enumerate(("cat", "dog")) for i in range(2)
    }
    assert reasons(data.passed_over) == {str(tmp_path / "cat" / "z.png"): DUPLICATE}


def test_links_to_a_file_or_folder_already_listed_are_duplicates(tmp_path):
    first = image(tmp_path / "cat" / "1.png")
    image(tmp_path / "cat" / "2.png")
    image(tmp_path / "dog" / "3.png")
    image(tmp_path / "dog" / "4.png")
    (tmp_path / "dog" / "same-as-1.png").symlink_to(first)
    (tmp_path / "dog" / "cats").symlink_to(tmp_path / "cat", target_is_directory=True)
    (tmp_path / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    data = load_data(str(tmp_path), input_size=6, val_split=2)
    everything = sorted(data.train.files + data.val.files)
    assert everything == sorted(
        str(tmp_path / p) for p in ("cat/1.png", "cat/2.png", "dog/3.png", "dog/4.png")
    )
    assert reasons(data.passed_over) == {
        str(tmp_path / "dog" / "cats"): FOLDER_SEEN,
        str(tmp_path / "dog" / "gone.png"): BROKEN_LINK,
        str(tmp_path / "dog" / "same-as-1.png"): DUPLICATE,
    }


def test_a_validation_image_linked_from_training_is_not_counted_twice(tmp_path):
    train = [image(tmp_path / "train" / c / f"{i}.png", 10 * i) for c in ("a", "b") for i in range(2)]
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a" / "leak.png").symlink_to(train[0])
    image(tmp_path / "val" / "a" / "own.png")
    data = load_data(str(tmp_path), input_size=6)
    assert data.val.files == [str(tmp_path / "val" / "a" / "own.png")]
    assert reasons(data.passed_over) == {str(tmp_path / "val" / "a" / "leak.png"): DUPLICATE}


def test_a_folder_that_cannot_be_listed_is_reported_and_the_root_raises(tmp_path, monkeypatch):
    image(tmp_path / "a.png")
    image(tmp_path / "locked" / "b.png")
    scandir = os.scandir

    def refuse(path):  # chmod does not stop root, who runs these tests in containers
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(walk_module.os, "scandir", refuse)
    files, skipped = walk_images(tmp_path)
    assert files == [tmp_path / "a.png"]
    assert reasons(skipped) == {str(tmp_path / "locked"): UNREADABLE}
    with pytest.raises(PermissionError):
        walk_images(tmp_path / "locked")


def test_one_walker_shares_nothing_between_roots_and_named_files_are_tried_whatever_their_name(tmp_path):
    image(tmp_path / "x.png")
    (tmp_path / "scan.dat").write_bytes((tmp_path / "x.png").read_bytes())
    walker = ImageWalker()
    assert walker.walk(tmp_path) == [tmp_path / "x.png"]
    assert walker.walk(tmp_path) == []  # the same folder again
    assert walker.file(tmp_path / "scan.dat") == [tmp_path / "scan.dat"]
    assert walker.file(tmp_path / "x.png") == []
    assert [s.reason for s in walker.skipped] == [NOT_AN_IMAGE, FOLDER_SEEN, DUPLICATE]


def test_what_was_passed_over_reads_as_one_line_grouped_by_reason():
    skipped = [Skipped(Path(f"p/.{i}"), HIDDEN) for i in range(5)] + [Skipped(Path("p/a.txt"), NOT_AN_IMAGE)]
    assert describe_skipped(skipped) == "5 hidden (p/.0, p/.1, p/.2 and 2 more); 1 not an image (p/a.txt)"
    assert describe_skipped([]) == ""
