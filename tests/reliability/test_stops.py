"""Promise 16: a run that stops says where it stands. An unexpected error inside the loop is one
line naming the step, where the traceback was kept, the last good checkpoint and the command that
continues the run; Ctrl-C names the checkpoint and that command; either way the run resumes to
the uninterrupted run's exact state, keeps its curves, and its last checkpoint's weights (EMA
ones here) serve `eval`, `predict` and `export`, which say that they use them."""

import csv
import json

import pytest
from reliability_runs import STEPS_PER_EPOCH, TINY, assert_same_training_state

from resnets.train import logging as train_logging
from resnets.train.step import TrainStep

STOP_STEP = STEPS_PER_EPOCH + 2  # in epoch 2, after the first checkpoint (epoch 1, step 6)


def stop_at(monkeypatch, step: int, error: BaseException) -> None:
    """TrainStep raises `error` when asked for optimizer step `step` (1-based)."""
    real = TrainStep.__call__

    def call(self, micro_batches, number):
        if number == step:
            raise error
        return real(self, micro_batches, number)

    monkeypatch.setattr(TrainStep, "__call__", call)


def test_an_exception_inside_a_step_is_one_line_naming_it_and_the_run_resumes(
    tmp_path, monkeypatch, reference_run, run_cli
):
    run = tmp_path / "run"
    stop_at(monkeypatch, STOP_STEP, RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR\nmore lines"))
    code, out, err = run_cli("train", *TINY, "--out", run)
    assert code == 2
    assert err == (
        f"resnets train: error: step {STOP_STEP} failed: RuntimeError: cuDNN error: "
        f"CUDNN_STATUS_INTERNAL_ERROR; traceback in {run / 'error.txt'}; last checkpoint: "
        f"{run / 'checkpoint' / 'epoch-0001.safetensors'} (epoch 1, step {STEPS_PER_EPOCH}); after a fix, "
        f"continue with: resnets train --resume {run}\n"
    )
    traceback = (run / "error.txt").read_text()
    assert traceback.startswith("Traceback") and "more lines" in traceback and "in call" in traceback
    monkeypatch.undo()
    code, _, err = run_cli("train", "--resume", run)
    assert code == 0, err
    assert_same_training_state(reference_run, run)


def test_an_error_while_evaluating_names_the_evaluation(tmp_path, monkeypatch, run_cli):
    from resnets.train import loop

    def broken(*args, **kwargs):
        raise ValueError("a broken validation batch")

    monkeypatch.setattr(loop, "evaluate", broken)
    code, _, err = run_cli("train", *TINY, "--epochs", "1", "--out", tmp_path / "run")
    assert code == 2
    assert err.startswith(
        "resnets train: error: evaluation after epoch 1 failed: ValueError: a broken validation batch; "
    )
    assert "no checkpoint yet (a resume starts the run over)" in err


def test_ctrl_c_names_the_checkpoint_and_the_resume_command_and_the_stopped_run_serves(
    tmp_path, monkeypatch, reference_run, run_cli
):
    run = tmp_path / "run"
    drawn = []
    real_plot = train_logging.plot_curves
    monkeypatch.setattr(
        train_logging,
        "plot_curves",
        lambda path, history, **kw: drawn.append(len(history)) or real_plot(path, history, **kw),
    )
    monkeypatch.setattr(train_logging, "CURVES_EVERY_S", 1e9)  # drawn after epoch 1, then only at the end
    stop_at(monkeypatch, 2 * STEPS_PER_EPOCH + 1, KeyboardInterrupt())
    code, _, err = run_cli("train", *TINY, "--out", run)
    assert code == 130
    assert err == (
        f"resnets train: interrupted: stopped during step {2 * STEPS_PER_EPOCH + 1}; last checkpoint: "
        f"{run / 'checkpoint' / 'epoch-0002.safetensors'} (epoch 2, step {2 * STEPS_PER_EPOCH}); "
        f"continue with: resnets train --resume {run}\n"
    )
    assert drawn == [1, 2]  # the stopped run's curves hold both of its epochs
    assert not (run / "model.safetensors").exists()

    # eval, predict and export use the last checkpoint's weights (the run keeps an EMA), and say so.
    note = (
        f"note: the run is not finished: using its last checkpoint, {run / 'checkpoint' / 'epoch-0002.safetensors'} "
        f"(epoch 2 of 3, step {2 * STEPS_PER_EPOCH}; EMA weights)\n"
    )
    code, out, err = run_cli("eval", run, "--json", "--out", tmp_path, "--device", "cpu")
    assert code == 0 and err == f"resnets eval: {note}"
    report = json.loads(out)
    epoch_2 = list(csv.DictReader((run / "metrics.csv").open()))[1]
    assert report["top1"] == pytest.approx(float(epoch_2["val_top1"]), abs=1e-6)  # what training measured
    assert report["weights_note"] == note[len("note: ") : -1]
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(image)
    code, out, err = run_cli("predict", run, image, "--json")
    assert code == 0 and err == f"resnets predict: {note}" and json.loads(out)["file"] == str(image)
    code, out, err = run_cli("export", run, "--format", "onnx", "--out", tmp_path / "stopped.onnx")
    assert code == 0 and err == f"resnets export: {note}" and (tmp_path / "stopped.onnx").is_file()

    monkeypatch.undo()
    code, _, err = run_cli("train", "--resume", run)
    assert code == 0, err
    assert_same_training_state(reference_run, run)
