"""Promise 4: a NaN or infinite loss stops the run with a message naming the step and the last good
checkpoint (or, under --skip-nonfinite, skips that step), and no non-finite tensor is ever saved.
The fp16 grad scaler's state survives save and resume."""

import json

import pytest
import torch
from reliability_runs import STEPS_PER_EPOCH, TINY, checkpoint_state, poison_loss
from safetensors.torch import load_file

from resnets.errors import ResNetsError
from resnets.train.checkpoint import save_checkpoint
from resnets.train.config import TrainConfig
from resnets.train.state import TrainState, restore, save

BAD_STEP = STEPS_PER_EPOCH + 3  # mid-way through epoch 2, after the first checkpoint


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())


@pytest.mark.parametrize(
    "kind, extra, last_good, last_step",
    [
        ("nan", [], "epoch-0001.safetensors", STEPS_PER_EPOCH),
        # Mid-epoch checkpoints every 2 steps: the one due after the bad step is never written.
        ("inf", ["--checkpoint-every-steps", "2"], "epoch-0001-step-00000008.safetensors", 8),
    ],
)
def test_nonfinite_loss_stops_the_run_naming_the_step_and_the_last_good_checkpoint(
    tmp_path, monkeypatch, kind, extra, last_good, last_step, run_cli
):
    poison_loss(monkeypatch, kind, BAD_STEP)
    run = tmp_path / "run"
    code, _, err = run_cli("train", *TINY, *extra, "--out", run)
    assert code != 0
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert f"loss became {kind} at step {BAD_STEP};" in line
    assert f"Last good checkpoint: {run / 'checkpoint' / last_good} (epoch 1, step {last_step})" in line
    assert not (run / "model.safetensors").exists()
    saved = checkpoint_state(run)
    assert saved.latest["progress"]["step"] == last_step  # nothing after the bad step was saved
    for path in (run / "checkpoint").glob("*.safetensors"):
        assert all_finite(load_file(path)), path


def test_skip_nonfinite_skips_the_bad_step_and_finishes_with_finite_weights(tmp_path, monkeypatch, run_cli):
    poison_loss(monkeypatch, "nan", BAD_STEP)
    run = tmp_path / "run"
    code, _, err = run_cli("train", *TINY, "--skip-nonfinite", "--out", run)
    assert code == 0, err
    progress = checkpoint_state(run).latest["progress"]
    assert progress["skipped_steps"] == [BAD_STEP]
    assert progress["step"] == 3 * STEPS_PER_EPOCH - 1  # one batch gave no step
    assert all_finite(load_file(run / "model.safetensors"))
    assert all_finite(checkpoint_state(run).tensors)


def test_a_checkpoint_with_a_non_finite_tensor_is_refused_before_anything_is_written(tmp_path):
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ResNetsError, match="non-finite values in model.w"):
            save_checkpoint(tmp_path, 1, {"model.w": torch.tensor([1.0, bad]), "rng": torch.ones(2)}, {})
    assert list(tmp_path.iterdir()) == []


def test_grad_scaler_state_after_an_overflow_survives_save_and_resume(tmp_path):
    """fp16 overflow is the scaler's job: it skips the step and halves its scale. Its state (scale,
    growth tracker) must come back exactly on resume. (The scaler runs on CPU too; fp16 autocast
    itself needs CUDA, see the test below.)"""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    for overflow in (False, True, False, False):
        loss = model(torch.randn(4, 3)).sum() * (float("inf") if overflow else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    assert scaler.get_scale() == 2.0**15  # the overflow halved it, two good steps have not regrown it
    save(tmp_path, TrainConfig(), TrainState(epoch=1, step=4), model, optimizer, scaler, None)
    assert json.loads((tmp_path / "latest.json").read_text())["scaler"]["scale"] == 2.0**15
    fresh_model = torch.nn.Linear(3, 2)
    fresh_opt = torch.optim.SGD(fresh_model.parameters(), lr=0.1, momentum=0.9)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    progress = restore(tmp_path, fresh_model, fresh_opt, fresh, None, torch.device("cpu"))
    assert progress.step == 4
    assert fresh.state_dict() == scaler.state_dict()
    # One more good step regrows the scale in both: the growth tracker came back too.
    for s, m, o in ((scaler, model, optimizer), (fresh, fresh_model, fresh_opt)):
        s.scale(m(torch.ones(1, 3)).sum()).backward()
        s.step(o)
        s.update()
    assert fresh.get_scale() == scaler.get_scale() == 2.0**16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast needs CUDA")
def test_fp16_run_resumes_with_the_grad_scaler_state_it_stopped_with(tmp_path):
    from resnets.train import resolve_recipe, train

    args = dict(
        model="basic:1-1-1:4-8-16",
        data="synthetic",
        synthetic_count=120,
        synthetic_classes=4,
        input_size=8,
        batch_size=16,
        epochs=3,
        device="cuda",
        precision="fp16",
    )
    config = resolve_recipe("default", **args)
    train(config, tmp_path / "a", stop_after_epoch=2)
    stopped = json.loads((tmp_path / "a" / "checkpoint" / "latest.json").read_text())["scaler"]
    assert stopped and stopped["scale"] > 0
    from resnets.train.build import build_model, load_training_data
    from resnets.train.step import build_optimizer

    model = build_model(config, load_training_data(config)).cuda()
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda")
    restore(tmp_path / "a" / "checkpoint", model, optimizer, scaler, None, torch.device("cuda"))
    assert scaler.state_dict() == stopped
    train(config, tmp_path / "a", resume=True)
    assert (tmp_path / "a" / "model.safetensors").exists()
