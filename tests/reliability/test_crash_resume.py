"""Promise 1: a run killed with SIGKILL at any step, even inside a checkpoint write, resumes with
`--resume` and finishes bit-identical to a run that was never interrupted (CPU, --deterministic)."""

import json

import pytest
from reliability_runs import STEPS_PER_EPOCH, TINY, assert_same_training_state, cli_process

from resnets.train.step import TrainStep

SIGKILLED = -9


# Fixed steps inside epoch 2 and epoch 3, so that every resume restores a checkpoint (a kill before
# the first checkpoint is the next test); epoch ends are where the kill inside the save happens.
@pytest.mark.parametrize("step", [STEPS_PER_EPOCH + 2, 2 * STEPS_PER_EPOCH + 3])
def test_kill_9_mid_epoch_and_inside_a_checkpoint_write_then_resume_ends_bit_identical(
    tmp_path, reference_run, step, run_cli
):
    run = tmp_path / "run"
    folder = run / "checkpoint"

    first = cli_process("train", *TINY, "--out", run, faults=("--kill-at-step", str(step)))
    assert first.returncode == SIGKILLED, f"step {step}: {first.stderr[-2000:]}"
    assert not (run / "model.safetensors").exists()
    completed_epochs = step // STEPS_PER_EPOCH
    latest = json.loads((folder / "latest.json").read_text())
    assert latest["progress"]["epoch"] == completed_epochs, f"step {step}"

    # Second life: resumed, then killed inside its first save, after the tensor file is on disk
    # and before the commit. The tensor file exists; latest.json still names the older one (or none).
    second = cli_process("train", "--resume", run, faults=("--kill-in-save",))
    assert second.returncode == SIGKILLED, f"step {step}: {second.stderr[-2000:]}"
    uncommitted = folder / f"epoch-{completed_epochs + 1:04d}.safetensors"
    assert uncommitted.is_file(), f"step {step}: the kill did not happen inside the save"
    assert json.loads((folder / "latest.json").read_text()) == latest  # not committed

    # Third life: runs to the end.
    code, _, err = run_cli("train", "--resume", run)
    assert code == 0, f"step {step}: {err[-2000:]}"
    assert_same_training_state(reference_run, run)


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(
    tmp_path, monkeypatch, reference_run, run_cli
):
    real = TrainStep.__call__

    def interrupted_after_step_2(self, micro_batches, step):
        if step == 3:
            raise KeyboardInterrupt
        return real(self, micro_batches, step)

    monkeypatch.setattr(TrainStep, "__call__", interrupted_after_step_2)
    run = tmp_path / "run"
    code, _, _ = run_cli("train", *TINY, "--out", run)
    assert code == 130
    assert (run / "config.json").exists() and not (run / "checkpoint").exists()
    monkeypatch.undo()
    code, _, err = run_cli("train", "--resume", run)
    assert code == 0, err
    assert_same_training_state(reference_run, run)
