"""Promise 1: a run killed with SIGKILL at any step, even inside a checkpoint write, resumes with
`--resume` and finishes bit-identical to a run that was never interrupted (CPU, --deterministic)."""

import json
import random

from reliability_runs import EPOCHS, STEPS_PER_EPOCH, TINY, assert_same_training_state, cli_process

from resnets.train import faults

SIGKILLED = -9


def test_kill_9_mid_epoch_and_inside_a_checkpoint_write_then_resume_ends_bit_identical(
    tmp_path, reference_run, run_cli
):
    # A random step inside epoch 2 or 3, so that every resume restores a checkpoint (a kill before
    # the first checkpoint is the next test); epoch ends are where the kill inside the save happens.
    mid_epoch = [s for s in range(STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH * EPOCHS) if s % STEPS_PER_EPOCH]
    step = random.SystemRandom().choice(mid_epoch)
    run = tmp_path / "run"
    folder = run / "checkpoint"

    first = cli_process("train", *TINY, "--out", run, env={"RESNETS_FAULT_KILL_AT_STEP": str(step)})
    assert first.returncode == SIGKILLED, f"step {step}: {first.stderr[-2000:]}"
    assert not (run / "model.safetensors").exists()
    completed_epochs = step // STEPS_PER_EPOCH
    latest = json.loads((folder / "latest.json").read_text())
    assert latest["progress"]["epoch"] == completed_epochs, f"step {step}"

    # Second life: resumed, then killed inside its first save, after the tensor file is on disk
    # and before the commit. The tensor file exists; latest.json still names the older one (or none).
    second = cli_process("train", "--resume", run, env={"RESNETS_FAULT_KILL_IN_SAVE": "1"})
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
    def interrupt_at_step_2(step):
        if step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(faults, "after_step", interrupt_at_step_2)
    run = tmp_path / "run"
    code, _, _ = run_cli("train", *TINY, "--out", run)
    assert code == 130
    assert (run / "config.json").exists() and not (run / "checkpoint").exists()
    monkeypatch.undo()
    code, _, err = run_cli("train", "--resume", run)
    assert code == 0, err
    assert_same_training_state(reference_run, run)
