"""--resume continues a run exactly (bit-identical to an uninterrupted run on CPU), may move it
(device, workers, checkpoint cadence) and extend it (--epochs / --iterations: a step schedule
keeps its milestones, a cosine is laid again from the current step), and refuses what would
change the mathematics of what was done."""

import csv
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from resnets.train import resolve_recipe, train

TINY = dict(
    model="basic:1-1-1:4-8-16",
    data="synthetic",
    synthetic_count=96,
    synthetic_classes=4,
    input_size=8,
    batch_size=16,
    epochs=3,
    deterministic=True,
    # Everything that carries state across epochs: momentum, EMA, the global RNG (MixUp, drop path).
    ema_decay=0.9,
    mixup_alpha=0.4,
    drop_path_rate=0.2,
)
STEPS_PER_EPOCH = 4  # 96 synthetic images, 20% held out: 76 to train on, in batches of 16


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)


def rows(path):
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "images_per_second")}
        for r in csv.DictReader(path.open())
    ]


def same_weights(a, b):
    a, b = load_file(a), load_file(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_an_interruption_ends_bit_identical_to_an_uninterrupted_run(
    tmp_path, deterministic, run_cli
):
    config = resolve_recipe("default", **TINY)
    train(config, tmp_path / "whole")
    train(config, tmp_path / "split", stop_after_epoch=1)
    assert not (tmp_path / "split" / "model.safetensors").exists()
    # How the run executes may change on the way: where checkpoints go, how often, how many.
    moved = ["--device", "cpu", "--workers", "0", "--keep-last", "2", "--checkpoint-every-steps", "4"]
    result = run_cli("train", "--resume", tmp_path / "split", *moved)
    assert result.code == 0, result.err
    assert result.err.startswith(
        "note: resumed at step 4 with --workers none -> 0, --device auto -> cpu, --keep-last 1 -> 2, "
        "--checkpoint-every-steps none -> 4\n"
    )
    assert same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "split" / "model.safetensors")
    ckpt = [
        load_file(next((tmp_path / d / "checkpoint").glob("epoch-0003.safetensors")))
        for d in ("whole", "split")
    ]
    assert all(torch.equal(ckpt[0][k], ckpt[1][k]) for k in ckpt[0])  # optimizer, EMA, RNG too
    assert rows(tmp_path / "whole" / "metrics.csv") == rows(tmp_path / "split" / "metrics.csv")
    record = json.loads((tmp_path / "split" / "config.json").read_text())
    assert record["config"]["keep_last"] == 2  # what the run continues with, for the next resume
    (resumed,) = record["resumes"]
    assert resumed["at_step"] == STEPS_PER_EPOCH and resumed["changed"]["keep_last"] == [1, 2]
    assert len(list((tmp_path / "split" / "checkpoint").glob("*.safetensors"))) == 2


def test_resume_refuses_what_would_change_the_mathematics_and_says_why(tmp_path, run_cli):
    train(resolve_recipe("default", **{**TINY, "deterministic": False}), tmp_path / "run", stop_after_epoch=1)
    before = (tmp_path / "run" / "config.json").read_text()
    code, _, err = run_cli(
        "train", "--resume", tmp_path / "run", "--lr", "0.5", "--seed", "3", "--epochs", "5"
    )
    assert code == 2
    assert err == (
        f"resnets train: error: --resume continues {tmp_path / 'run'} as it was started: --lr, --seed "
        "would change what the run computes (its weights, optimizer state and schedule come from the "
        "old setting); drop them, or start a new run from its weights with --weights\n"
    )
    code, _, err = run_cli("train", "--resume", tmp_path / "run", "--iterations", "100")
    assert (
        code == 2
        and "counts its length (and milestones and warm-up) in epochs; extend it with --epochs" in err
    )
    code, _, err = run_cli("train", "--resume", tmp_path / "nowhere")
    assert (code, err) == (2, f"resnets train: error: {tmp_path / 'nowhere'}: no such run directory\n")
    assert (tmp_path / "run" / "config.json").read_text() == before
    assert not (tmp_path / "nowhere").exists()


def test_extending_a_step_schedule_run_equals_the_longer_run_planned_from_the_start(
    tmp_path, deterministic, run_cli
):
    """The milestones stay where they were: two epochs, then two more, is the four-epoch run."""
    step = dict(TINY, schedule="step", milestones=[1, 3], warmup=0, epochs=4)
    train(resolve_recipe("default", **step), tmp_path / "whole")
    train(resolve_recipe("default", **{**step, "epochs": 2}), tmp_path / "grown")
    finished = load_file(tmp_path / "grown" / "model.safetensors")
    result = run_cli("train", "--resume", tmp_path / "grown", "--epochs", "4")
    assert result.code == 0, result.err
    assert "note: step schedule continues to step 16 (was 8), milestones kept at steps 4, 12\n" in result.err
    assert same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "grown" / "model.safetensors")
    assert rows(tmp_path / "whole" / "metrics.csv") == rows(tmp_path / "grown" / "metrics.csv")
    # The two-epoch run's final files are kept under their epoch, not overwritten.
    kept = load_file(tmp_path / "grown" / "model-epoch-0002.safetensors")
    assert all(torch.equal(kept[k], finished[k]) for k in finished)
    assert json.loads((tmp_path / "grown" / "summary-epoch-0002.json").read_text())["epochs"] == 2
    assert json.loads((tmp_path / "grown" / "summary.json").read_text())["epochs"] == 4


def cosine(peak, step, start, end):
    return peak * 0.5 * (1 + math.cos(math.pi * (step - start) / (end - start)))


def test_extending_a_cosine_lays_it_again_from_the_current_step_to_the_new_end(tmp_path, run_cli):
    base = dict(TINY, schedule="cosine", warmup=0, lr=0.1, deterministic=False, ema_decay=None)
    spe = STEPS_PER_EPOCH
    # Interrupted after epoch 2 of 4: from the rate it had at step 8 down to 0 at the new end.
    train(resolve_recipe("default", **{**base, "epochs": 4}), tmp_path / "cut", stop_after_epoch=2)
    result = run_cli("train", "--resume", tmp_path / "cut", "--epochs", "6")
    assert result.code == 0, result.err
    start_lr = cosine(0.1, 2 * spe, 0, 4 * spe)
    assert (
        f"cosine schedule laid again from step 8 at lr {start_lr:.4g} down to 0 to step 24 (was 16)\n"
        in result.err
    )
    lrs = [
        float(r["lr"]) for r in rows(tmp_path / "cut" / "metrics.csv")
    ]  # the rate of each epoch's last step
    expected = [cosine(0.1, e * spe - 1, 0, 4 * spe) for e in (1, 2)]
    expected += [cosine(start_lr, e * spe - 1, 2 * spe, 6 * spe) for e in (3, 4, 5, 6)]
    assert lrs == pytest.approx(expected, rel=1e-5)
    # A finished run (lr 0 at its end) restarts at the peak rate instead: SGDR's warm restart.
    train(resolve_recipe("default", **{**base, "epochs": 2}), tmp_path / "done")
    result = run_cli("train", "--resume", tmp_path / "done", "--epochs", "3")
    assert result.code == 0, result.err
    assert "from step 8 at lr 0.1 down to 0 to step 12 (was 8) (a warm restart" in result.err
    last = float(rows(tmp_path / "done" / "metrics.csv")[-1]["lr"])
    assert last == pytest.approx(cosine(0.1, 3 * spe - 1, 2 * spe, 3 * spe), rel=1e-5)
    # The restart point is part of the run: resuming it again keeps the same schedule.
    state = json.loads((tmp_path / "done" / "checkpoint" / "latest.json").read_text())
    assert state["progress"]["schedule_restart"] == [2 * spe, 0.1]


def test_a_finished_run_resumed_without_a_new_length_says_it_is_complete(tmp_path, run_cli):
    train(resolve_recipe("default", **{**TINY, "epochs": 1, "deterministic": False}), tmp_path / "run")
    weights = tmp_path / "run" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    code, out, err = run_cli("train", "--resume", tmp_path / "run")
    assert code == 0
    assert err == (
        f"note: {tmp_path / 'run'} is already complete (1 epochs, 4 steps); to train it further, "
        "resume with --epochs beyond 1\n"
    )
    assert out.startswith(f"run directory: {tmp_path / 'run'}\nfinal: val top-1")
    assert weights.stat().st_mtime_ns == stamp  # nothing was trained or rewritten
    code, _, err = run_cli("train", "--resume", tmp_path / "run", "--epochs", "0.5")
    assert code == 2 and "has trained 4 steps (1 epochs) already; the new length ends at step 2" in err
