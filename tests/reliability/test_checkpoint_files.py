"""Promises 2 and 3: checkpoint writes are atomic, the previous checkpoint stays loadable until the
new one is committed, --keep-last deletes old ones only after that, and a full disk is a clear
one-line error that leaves a resumable run behind."""

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from reliability_runs import TINY, assert_same_training_state

from resnets import atomic
from resnets.errors import ResNetsError
from resnets.train import checkpoint as ckpt
from resnets.train.checkpoint import load_checkpoint, save_checkpoint

DISK_FULL = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def save(folder: Path, epoch: int, keep_last: int = 1) -> None:
    save_checkpoint(
        folder, epoch, {"w": torch.full((64,), float(epoch))}, {"step": epoch}, keep_last=keep_last
    )


def assert_holds_epoch(folder: Path, epoch: int) -> None:
    tensors, state = load_checkpoint(folder)
    assert state["step"] == epoch and torch.equal(tensors["w"], torch.full((64,), float(epoch)))
    assert not [p.name for p in folder.iterdir() if atomic.TMP_MARK in p.name], "temporary files left"


def test_atomic_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_text(tmp_path / "a.txt", "hello")
    assert events == [("fsync", "file"), ("rename", "a.txt"), ("fsync", "dir")]
    assert (tmp_path / "a.txt").read_text() == "hello" and os.listdir(tmp_path) == ["a.txt"]


def half_then_disk_full(real, path_arg: int):
    """A writer that gets half its bytes onto the disk, then finds it full."""

    def write(*args, **kwargs):
        real(*args, **kwargs)
        path = Path(args[path_arg])
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise DISK_FULL

    return write


@pytest.mark.parametrize("where", ["tensor file", "between tensor file and commit", "latest.json"])
def test_a_save_failing_at_any_point_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch, where):
    save(tmp_path, 1)
    if where == "tensor file":
        monkeypatch.setattr(ckpt, "save_file", half_then_disk_full(ckpt.save_file, 1))
    elif where == "between tensor file and commit":
        monkeypatch.setattr(ckpt, "write_json", lambda *a, **k: (_ for _ in ()).throw(DISK_FULL))
    else:
        real = Path.write_text

        def write_text(self, *args, **kwargs):
            if "latest.json" in self.name:  # the file or its temporary twin
                return half_then_disk_full(real, 0)(self, *args, **kwargs)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(ResNetsError) as info:
        save(tmp_path, 2)
    message = str(info.value)
    assert "No space left on device" in message and "epoch-0001.safetensors (" in message
    assert "\n" not in message
    assert_holds_epoch(tmp_path, 1)
    monkeypatch.undo()
    save(tmp_path, 2)
    assert_holds_epoch(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.safetensors", "latest.json"]


def test_keep_last_keeps_the_newest_k_each_loadable_and_deletes_only_after_the_commit(tmp_path, monkeypatch):
    for epoch in range(1, 5):
        save(tmp_path, epoch, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "epoch-0003.safetensors",
        "epoch-0004.safetensors",
    ]
    assert_holds_epoch(tmp_path, 4)
    older, state = load_checkpoint(tmp_path, "epoch-0003.safetensors")  # whole on its own
    assert state["step"] == 3 and torch.equal(older["w"], torch.full((64,), 3.0))
    # The commit of epoch 5 fails: nothing older may have been deleted.
    monkeypatch.setattr(ckpt, "write_json", lambda *a, **k: (_ for _ in ()).throw(DISK_FULL))
    with pytest.raises(ResNetsError):
        save(tmp_path, 5, keep_last=2)
    assert {"epoch-0003.safetensors", "epoch-0004.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert_holds_epoch(tmp_path, 4)
    monkeypatch.undo()
    save(tmp_path, 5, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "epoch-0004.safetensors",
        "epoch-0005.safetensors",
    ]
    assert json.loads((tmp_path / "latest.json").read_text())["checkpoints"] == [
        "epoch-0004.safetensors",
        "epoch-0005.safetensors",
    ]


def test_keep_last_is_a_train_flag_and_keeps_that_many_epochs(tmp_path, run_cli):
    code, _, err = run_cli("train", *TINY, "--epochs", "3", "--keep-last", "2", "--out", tmp_path / "run")
    assert code == 0, err
    folder = tmp_path / "run" / "checkpoint"
    assert sorted(p.name for p in folder.glob("*.safetensors")) == [
        "epoch-0002.safetensors",
        "epoch-0003.safetensors",
    ]


def test_disk_full_during_training_is_one_line_and_the_run_resumes_bit_identical(
    tmp_path, monkeypatch, reference_run, run_cli
):
    real, calls = ckpt.save_file, []

    def second_save_hits_a_full_disk(tensors, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            return half_then_disk_full(real, 1)(tensors, path, **kwargs)
        return real(tensors, path, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", second_save_hits_a_full_disk)
    run = tmp_path / "run"
    code, _, err = run_cli("train", *TINY, "--out", run)
    assert code == 2
    (line,) = err.strip().splitlines()[-1:]
    assert line.startswith("resnets train: error: could not write checkpoint")
    assert "No space left on device" in line and "epoch-0001.safetensors (epoch 1, step 6)" in line
    assert len([ln for ln in err.splitlines() if "error" in ln]) == 1
    assert not (run / "model.safetensors").exists()
    folder = run / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001.safetensors", "latest.json"]
    assert load_checkpoint(folder)[1]["progress"]["epoch"] == 1
    monkeypatch.undo()  # space freed
    code, _, err = run_cli("train", "--resume", run)
    assert code == 0, err
    assert_same_training_state(reference_run, run)
