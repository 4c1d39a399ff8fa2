"""Checkpoints written by real trainers load without unpickling code: timm's CheckpointSaver (run
here, with a real argparse Namespace and a numpy metric) and the calls torchvision's
references/classification/train.py makes (its argparse settings, SequentialLR warm-up, the
ExponentialMovingAverage of its utils.py, a GradScaler). Their weights give the trainer's
model's logits; their recorded evaluation settings become the file's pipeline; anything beyond
the short list of inert types is still refused."""

import argparse
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision

from resnets.errors import WeightsError
from resnets.weights import load_model, read_safetensors
from resnets.weights.pytorch_files import read_checkpoint


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _one_step(model, optimizer):
    """A real optimizer step, so the saved optimizer and scheduler states are a trained run's."""
    loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_a_timm_checkpoint_saver_file_loads_and_records_timms_evaluation(tmp_path, run_cli):
    timm = pytest.importorskip("timm")
    from timm.utils import CheckpointSaver

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    _one_step(model, optimizer)
    # What timm's train.py parses (a subset of its flags, with its defaults): None means "from the
    # model's pretrained config"; this run set its own crop fraction and interpolation.
    args = argparse.Namespace(
        model="resnet18",
        img_size=None,
        input_size=None,
        crop_pct=0.9,
        mean=None,
        std=None,
        interpolation="bilinear",
        lr=0.1,
        epochs=1,
        batch_size=2,
    )
    saver = CheckpointSaver(model, optimizer, args=args, checkpoint_dir=str(tmp_path), max_history=1)
    saver.save_checkpoint(epoch=0, metric=np.float64(0.25))  # a numpy scalar, as metrics often are
    path = tmp_path / "checkpoint-0.pth.tar"
    raw = read_checkpoint(path)
    assert isinstance(raw["args"], argparse.Namespace) and raw["arch"] == "resnet18"

    out = tmp_path / "resnet18.safetensors"
    code, _, err = run_cli("convert", path, "--out", out)  # args.model names the network
    assert code == 0 and err == "", err
    ours, meta = load_model(out)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(model, x), rtol=0, atol=1e-5)
    config = timm.data.resolve_data_config(vars(args), model=model)
    record = meta.preprocess
    assert (
        (record.crop_pct, record.interpolation)
        == (config["crop_pct"], config["interpolation"])
        == (0.9, "bilinear")
    )
    assert record.mean == config["mean"] and record.input_size == tuple(config["input_size"][1:])


class ExponentialMovingAverage(torch.optim.swa_utils.AveragedModel):
    """torchvision references/classification/utils.py's EMA, as that file defines it."""

    def __init__(self, model, decay, device="cpu"):
        def ema_avg(avg_model_param, model_param, num_averaged):
            return decay * avg_model_param + (1 - decay) * model_param

        super().__init__(model, device, ema_avg, use_buffers=True)


def reference_args(argv):
    """The evaluation and model flags of references/classification/train.py's get_args_parser."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet18", type=str)
    parser.add_argument("--lr", default=0.1, type=float)
    parser.add_argument("--lr-scheduler", default="steplr", type=str)
    parser.add_argument("--lr-warmup-epochs", default=0, type=int)
    parser.add_argument("--lr-warmup-decay", default=0.01, type=float)
    parser.add_argument("--lr-step-size", default=30, type=int)
    parser.add_argument("--lr-gamma", default=0.1, type=float)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--model-ema", action="store_true")
    parser.add_argument("--model-ema-decay", type=float, default=0.99998)
    parser.add_argument("--interpolation", default="bilinear", type=str)
    parser.add_argument("--val-resize-size", default=256, type=int)
    parser.add_argument("--val-crop-size", default=224, type=int)
    parser.add_argument("--train-crop-size", default=224, type=int)
    return parser.parse_args(argv)


def test_a_torchvision_reference_checkpoint_loads_and_records_its_validation_transform(tmp_path, run_cli):
    args = reference_args(["--model", "resnet50", "--val-resize-size", "232", "--lr-warmup-epochs", "1"])
    args.model = "resnet18"  # the same calls on a smaller network
    torch.manual_seed(1)
    model = torchvision.models.resnet18()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    main = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.lr_step_size, gamma=args.lr_gamma)
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=args.lr_warmup_decay, total_iters=args.lr_warmup_epochs
    )
    lr_scheduler = torch.optim.lr_scheduler.SequentialLR(
        optimizer, schedulers=[warmup, main], milestones=[args.lr_warmup_epochs]
    )
    model_ema = ExponentialMovingAverage(model, decay=0.9)
    scaler = torch.amp.GradScaler("cpu")
    _one_step(model, optimizer)
    lr_scheduler.step()
    model_ema.update_parameters(model)
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "epoch": 0,
        "args": args,
    }
    checkpoint["model_ema"] = model_ema.state_dict()
    checkpoint["scaler"] = scaler.state_dict()
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)  # utils.save_on_master

    out = tmp_path / "r18.safetensors"
    code, _, err = run_cli("convert", path, "--out", out, "--json")
    assert code == 0 and err == "", err
    ours, meta = load_model(out)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(model, x), rtol=0, atol=1e-5)  # "model", not the EMA
    record = read_safetensors(out)[1].preprocess
    assert (record.resize_size, record.input_size, record.interpolation) == (232, (224, 224), "bilinear")
    assert record.mean == (0.485, 0.456, 0.406) and "train.py" in record.source


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_a_namespace_does_not_let_anything_else_through(tmp_path):
    """The inert list is short: a payload next to an argparse.Namespace and numpy scalars is still
    refused, and the message names the payload, not the admitted types."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_RunsShell(tmp_path / "canary")))  # the payload is live
    assert (tmp_path / "canary").exists()
    path = tmp_path / "ckpt.pth"
    torch.save(
        {
            "state_dict": {"w": torch.ones(1)},
            "args": argparse.Namespace(lr=0.1),
            "metric": np.float32(1),
            "x": _RunsShell(marker),
        },
        path,
    )
    with pytest.raises(WeightsError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert f"{os.system.__module__}.system" in message and "Namespace" not in message.split("we read")[0]
    assert not marker.exists()
    # numpy arrays are not scalars: their reconstruction stays refused
    torch.save({"state_dict": {"w": torch.ones(1)}, "stats": np.zeros(3)}, path)
    with pytest.raises(WeightsError, match="_reconstruct"):
        read_checkpoint(path)
