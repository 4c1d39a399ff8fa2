"""Promise 1: a run killed with SIGKILL at any step, even inside a checkpoint write, resumes with
`--resume` and finishes bit-identical to a run that was never interrupted (CPU, --deterministic)."""

import json
import random

from conftest import EPOCHS, STEPS_PER_EPOCH, TINY, assert_same_training_state, cli, cli_process

SIGKILLED = -9


def test_kill_9_mid_epoch_and_inside_a_checkpoint_write_then_resume_ends_bit_identical(
    tmp_path, reference_run
):
    # A random step that is not the last of an epoch (those are covered by the kill in the save).
    mid_epoch = [s for s in range(1, STEPS_PER_EPOCH * EPOCHS) if s % STEPS_PER_EPOCH]
    step = random.SystemRandom().choice(mid_epoch)
    run = tmp_path / "run"
    folder = run / "checkpoint"

    first = cli_process("train", *TINY, "--out", run, env={"RESNETS_FAULT_KILL_AT_STEP": str(step)})
    assert first.returncode == SIGKILLED, f"step {step}: {first.stderr[-2000:]}"
    assert not (run / "model.safetensors").exists()
    completed_epochs = step // STEPS_PER_EPOCH
    if completed_epochs:
        latest = json.loads((folder / "latest.json").read_text())
        assert latest["progress"]["epoch"] == completed_epochs, f"step {step}"

    # Second life: resumed, then killed inside its first save, after the tensor file is on disk
    # and before the commit. The tensor file exists; latest.json still names the older one (or none).
    second = cli_process("train", "--resume", run, env={"RESNETS_FAULT_KILL_IN_SAVE": "1"})
    assert second.returncode == SIGKILLED, f"step {step}: {second.stderr[-2000:]}"
    uncommitted = folder / f"epoch-{completed_epochs + 1:04d}.safetensors"
    assert uncommitted.is_file(), f"step {step}: the kill did not happen inside the save"
    if completed_epochs:
        assert json.loads((folder / "latest.json").read_text())["tensors"] != uncommitted.name
    else:
        assert not (folder / "latest.json").exists()

    # Third life: runs to the end.
    code, _, err = cli("train", "--resume", run)
    assert code == 0, f"step {step}: {err[-2000:]}"
    assert_same_training_state(reference_run, run)
