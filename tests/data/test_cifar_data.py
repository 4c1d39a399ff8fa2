"""CIFAR python folders: read exactly, auto-detected, and never trusting pickle."""

import pickle

import numpy as np
import pytest
import torch
from cifar_format import write_cifar10, write_cifar100

from resnets.data import load_data
from resnets.data.cifar import safe_load
from resnets.errors import DataError


def test_cifar10_folder_in_the_real_python2_format_reads_back_every_pixel_and_label(tmp_path):
    written = write_cifar10(tmp_path / "cifar-10-batches-py")
    data = load_data(str(tmp_path))  # the parent folder: found by its contents
    assert data.name == "cifar10" and data.classes == written["names"]
    expected = np.concatenate(written["train"]).reshape(-1, 3, 32, 32)
    assert torch.equal(data.train.images, torch.from_numpy(expected))
    assert data.train.labels.tolist() == written["train_labels"]
    assert torch.equal(data.val.images, torch.from_numpy(written["test"].reshape(-1, 3, 32, 32)))
    assert data.val.labels.tolist() == written["test_labels"]
    # Statistics are the training split's, per channel, on the 0..1 scale.
    assert data.mean[0] == pytest.approx(expected[:, 0].mean() / 255, abs=1e-9)


def test_cifar100_folder_is_detected_with_its_fine_labels(tmp_path):
    write_cifar100(tmp_path / "cifar-100-python")
    data = load_data(str(tmp_path / "cifar-100-python"))
    assert data.name == "cifar100" and len(data.classes) == 100 and len(data.train) == 40


def test_val_split_holds_out_a_fixed_stratified_count_of_the_training_batches(tmp_path):
    write_cifar10(tmp_path / "c", per_batch=20)
    a = load_data(str(tmp_path / "c"), val_split=20)
    b = load_data(str(tmp_path / "c"), val_split=20)
    assert (len(a.train), len(a.val)) == (80, 20)
    assert torch.equal(a.val.images, b.val.images)  # same images every time: resume and eval agree


def test_a_pickle_naming_a_disallowed_global_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match=r"refused global '(io|builtins)\.open'"):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [("os", "system"), ("numpy", "load"), ("_codecs", "encode"), ("numpy._core.numeric", "_frombuffer")],
)
def test_only_numpys_array_reconstruction_globals_are_admitted(tmp_path, module, name):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"q\x00.")
    with pytest.raises(DataError, match="refused global"):
        safe_load(path)


def test_a_missing_named_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="--download"):
        load_data("cifar10", data_dir=tmp_path)
