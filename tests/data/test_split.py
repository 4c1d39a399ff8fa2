"""The data a run used is recorded and checked: a stratified split that keeps a one-image class in
training (and says so), split.json read back by eval and --resume, a folder that changed refused
with the numbers, --val-split values that mean what they say, a batch larger than the data
refused, and one tree walk for training, predict and eval."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.model_selection import train_test_split

from resnets.cli.predict import image_files
from resnets.data import load_data
from resnets.data.folder import load_test_folder
from resnets.data.split import hold_out
from resnets.errors import DataError
from resnets.preprocess import Preprocess

TINY = ["--model", "basic:1-1-1:4-8-16", "--epochs", "1", "--batch-size", "4", "--input-size", "8"]


def folder(root, counts, size=8, start=0):
    """Class folders of small PNGs: counts = {"a": 20, ...}; distinct pixels per file."""
    rng = np.random.default_rng(start)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(
                root / name / f"{i}.png"
            )
    return root


def test_a_class_of_one_image_stays_in_training_and_the_others_stay_stratified(tmp_path, run_cli):
    """20 + 20 + 1 images, --val-split 0.2: 4 and 4 held out (not 7/2/0, the unstratified split
    a single tiny class used to cause), 'c' kept in training, said in one line, counts recorded."""
    folder(tmp_path / "data", {"a": 20, "b": 20, "c": 1})
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--data", tmp_path / "data", "--val-split", "0.2", *TINY, "--out", run)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "kept in training" in line]
    assert len(notes) == 1 and "'c'" in notes[0] and "'a'" not in notes[0], err
    record = json.loads((run / "config.json").read_text())["data"]
    assert record["split"]["per_class"] == {
        "a": {"train": 16, "val": 4},
        "b": {"train": 16, "val": 4},
        "c": {"train": 1, "val": 0},
    }
    assert record["split"]["kept_in_training"] == ["c"] and record["val_images"] == 8
    split = json.loads((run / "split.json").read_text())
    assert len(split["val"]) == 8
    assert not set(split["val"]) & set(split["train"]) and "c/0.png" in split["train"]


def test_the_split_is_scikit_learns_stratified_split_when_every_class_can_give_an_image():
    """The oracle: sklearn's train_test_split with stratify and the seed, which runs made before
    splits were recorded used too, so their split derives the same."""
    labels = torch.as_tensor([0] * 30 + [1] * 12 + [2] * 7)
    expected = train_test_split(np.arange(49), test_size=0.2, stratify=labels.numpy(), random_state=3)[1]
    plan = hold_out(labels, 0.2, 3, ["x", "y", "z"])
    assert plan.val.tolist() == sorted(expected.tolist()) and plan.kept_in_training == []
    # With a one-image class, a run made before the split was recorded held out unstratified:
    tiny = torch.cat([labels, torch.as_tensor([3])])
    old = train_test_split(np.arange(50), test_size=0.2, stratify=None, random_state=3)[1]
    assert hold_out(tiny, 0.2, 3, ["x", "y", "z", "w"], legacy=True).val.tolist() == sorted(old.tolist())
    assert hold_out(tiny, 0.2, 3, ["x", "y", "z", "w"]).kept_in_training == ["w"]


def test_eval_and_resume_read_the_recorded_split_and_refuse_a_folder_that_changed(tmp_path, run_cli):
    data = folder(tmp_path / "data", {"a": 12, "b": 12})
    run = tmp_path / "run"
    args = ["train", "--data", data, "--val-split", "0.25", *TINY, "--out", run]
    assert run_cli(*args)[0] == 0
    split = json.loads((run / "split.json").read_text())
    # The record, not a new derivation, is what eval uses: move one training file into validation.
    split["val"].append(split["train"].pop(0))
    (run / "split.json").write_text(json.dumps(split))
    code, out, err = run_cli("eval", run, "--json", "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["count"] == 7  # 6 held out + the one moved

    folder(data, {"a": 3, "b": 3}, start=100)  # six new images
    (data / "b" / "0.png").unlink()
    for command in (
        ["eval", run],
        ["train", "--resume", run, "--epochs", "2"],
    ):  # extended: a finished run is complete
        code, _, err = run_cli(*command)
        assert code == 2 and err.count("\n") == 1, err
        assert "6 file(s) added" in err and "1 removed" in err and "--accept-changed-data" in err
    code, out, err = run_cli("eval", run, "--json", "--device", "cpu", "--accept-changed-data")
    assert code == 0, err
    report = json.loads(out)
    assert report["count"] == 7 - ("b/0.png" in split["val"])  # the recorded ones that remain
    assert "added" in err  # said in one line


def test_val_split_zero_means_no_held_out_split_and_bad_values_are_our_words(tmp_path, run_cli):
    run = tmp_path / "run"
    code, _, err = run_cli("train", "--val-split", "0", "--epochs", "1", "--out", run)
    assert code == 2 and err.count("\n") == 1 and "--val-split 0 holds out nothing" in err, err
    code, _, err = run_cli("train", "--val-split", "1.5", "--epochs", "1", "--out", run)
    assert code == 2 and err.count("\n") == 1 and "--val-split 1.5: give a fraction" in err, err
    assert "sklearn" not in err and "test_size" not in err
    assert not run.exists()
    # A folder with its own val/ part: 0 holds nothing out of train/ and validates on val/.
    folder(tmp_path / "tv" / "train", {"a": 4, "b": 4})
    folder(tmp_path / "tv" / "val", {"a": 2, "b": 2}, start=50)
    data = load_data(str(tmp_path / "tv"), input_size=8, val_split=0)
    assert (len(data.train), len(data.val)) == (8, 4)


def test_a_batch_larger_than_the_training_data_is_refused_naming_both(tmp_path, run_cli):
    run = tmp_path / "run"
    args = [
        "--data",
        "synthetic",
        "--synthetic-count",
        "40",
        "--synthetic-classes",
        "2",
        "--input-size",
        "8",
        "--out",
        run,
    ]
    code, _, err = run_cli("train", *args, "--model", "basic:1-1-1:4-8-16", "--batch-size", "64")
    assert code == 2 and err.count("\n") == 1
    assert "--batch-size 64" in err and "32 training images" in err, err
    assert not run.exists()


def test_eval_predict_and_training_walk_class_folders_alike(tmp_path):
    """One walker: a GIF counts everywhere, hidden files and non-images nowhere, a link back to a
    parent folder is not followed."""
    root = folder(tmp_path / "data", {"a": 2, "b": 2})
    Image.new("RGB", (8, 8)).save(root / "a" / "anim.gif")
    (root / "a" / ".DS_Store").write_bytes(b"\0")
    (root / "b" / "notes.txt").write_text("x")
    (root / "b" / "loop").symlink_to(root / "b", target_is_directory=True)
    trained = load_data(str(root), input_size=8, val_split=2)
    evaluated = load_test_folder(root, Preprocess((8, 8)))
    predicted, _ = image_files([root])
    listed = sorted(trained.train.files + trained.val.files)
    assert listed == sorted(evaluated.val.files) == sorted(map(str, predicted))
    assert str(root / "a" / "anim.gif") in listed and len(listed) == 5


def test_hold_out_refuses_what_cannot_be_held_out_in_our_words():
    labels = torch.as_tensor([0] * 5 + [1] * 5 + [2] * 5)
    for val, words in [
        (2, "fewer than the 3 classes"),
        (14, "at most 12"),
        (0.01, "holds out"),
        (-1, "fraction"),
    ]:
        with pytest.raises(DataError, match=words):
            hold_out(labels, val, 0, ["a", "b", "c"])
