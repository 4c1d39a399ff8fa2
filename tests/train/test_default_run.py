"""`resnets train` with no arguments: ResNet-20 on the bundled digits, >= 97% held-out top-1."""

import csv
import json

import torch
from torchvision.transforms.v2 import functional as TF

from resnets.models import ZOO, create_model, resolve_spec
from resnets.train.logging import COLUMNS
from resnets.weights import load_weights, read_safetensors


def test_default_run_trains_the_zoos_resnet20_to_97_percent_held_out_top1(default_run):
    s = default_run.summary
    print(f"default run: {default_run.wall:.1f} s wall, val top-1 {100 * s['val_top1']:.2f}%")
    assert s["model"] == "resnet20" and s["data"] == "digits"
    assert s["val_top1"] >= 0.97
    # The CIFAR ResNet-20 of the zoo (3x3 stem, [3, 3, 3] basic blocks, option A), one input channel.
    assert default_run.record["model"]["spec"] == ZOO["resnet20"].spec.replace(in_channels=1).to_dict()
    assert default_run.record["model"]["params"] == 269_722 - 2 * 16 * 9  # Table 6 count, 1 input channel
    data = default_run.record["data"]
    assert (data["train_images"], data["val_images"], data["input_size"]) == (1437, 360, 16)


def test_default_run_directory_holds_config_metrics_curves_weights_checkpoint_and_summary(default_run):
    d, s = default_run.dir, default_run.summary
    for key in (
        "model",
        "data",
        "epochs",
        "val_top1",
        "val_top5",
        "val_loss",
        "train_seconds",
        "images_per_second",
    ):
        assert key in s
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    assert list(rows[0]) == list(COLUMNS)
    assert [int(r["epoch"]) for r in rows] == list(range(1, s["epochs"] + 1))
    assert float(rows[-1]["val_top1"]) == float(f"{s['val_top1']:.6g}")
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = default_run.record
    assert record["seed"] == 0 and record["config"]["model"] == "resnet20"
    assert {"torch", "torchvision", "resnets", "python"} <= set(record["versions"])
    assert record["command"][-1] == "train"
    latest = json.loads((d / "checkpoint" / "latest.json").read_text())
    assert latest["progress"]["epoch"] == s["epochs"] and (d / "checkpoint" / latest["tensors"]).is_file()


def test_default_run_prints_one_table_row_per_epoch_then_the_run_directory(default_run):
    lines = default_run.stdout.rstrip("\n").splitlines()
    epochs = default_run.summary["epochs"]
    assert lines[0].split()[:4] == ["epoch", "step", "lr", "train_loss"]
    assert [line.split()[0] for line in lines[1 : 1 + epochs]] == [
        f"{e}/{epochs}" for e in range(1, epochs + 1)
    ]
    assert len({len(line) for line in lines[: 1 + epochs]}) == 1  # fixed columns
    assert lines[1 + epochs] == f"run directory: runs/{default_run.dir.name}"  # where it went, from the cwd
    assert lines[2 + epochs].startswith("final: val top-1")


def test_saved_weights_carry_what_predict_needs_and_score_what_the_summary_says(default_run):
    """Independent check: rebuild the model from the file's metadata alone and score the
    held-out digits prepared from scikit-learn directly."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _, meta = read_safetensors(default_run.dir / "model.safetensors")
    assert meta.classes == [str(i) for i in range(10)] and meta.preprocess.color == "L"
    model = create_model(resolve_spec(meta.model, in_channels=1))
    load_weights(model, default_run.dir / "model.safetensors")
    bunch = load_digits()
    _, held = train_test_split(range(1797), test_size=0.2, stratify=bunch.target, random_state=0)
    held = sorted(held)
    x = torch.as_tensor(bunch.images[held], dtype=torch.float32).unsqueeze(1) * 255 / 16
    x = TF.resize(x, [meta.input_size] * 2, antialias=True).round().clamp(0, 255) / 255
    x = (x - meta.mean[0]) / meta.std[0]
    with torch.no_grad():
        correct = (model.eval()(x).argmax(1) == torch.as_tensor(bunch.target[held])).sum().item()
    assert correct / len(held) == default_run.summary["val_top1"]


def test_eval_on_the_run_directory_agrees_with_the_training_summary(default_run, run_cli):
    result = run_cli("eval", default_run.dir, "--json")
    assert result.code == 0
    report = json.loads(result.out)
    s = default_run.summary
    assert report["count"] == 360
    assert report["top1"] == s["val_top1"] and report["top5"] == s["val_top5"]
    assert abs(report["loss"] - s["val_loss"]) < 1e-5
    assert set(report["per_class"]) == {str(i) for i in range(10)}
    hits = sum(acc * 36 for acc in report["per_class"].values())  # 36 held-out images per digit
    assert round(hits) == round(report["top1"] * 360)
    assert (default_run.dir / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_runs_the_network_through_the_inference_fast_path(default_run, tmp_path, monkeypatch):
    import resnets.evaluate
    from resnets.evaluate import evaluate_run

    made = []
    real = resnets.evaluate.optimize

    def spy(model, *args, **kwargs):
        made.append(real(model, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(resnets.evaluate, "optimize", spy)
    report = evaluate_run(default_run.dir, out=tmp_path, device="cpu")
    assert [m.config.mode for m in made] == ["infer"] and made[0].config.fold_bn
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in made[0].modules())  # folded
    assert report["top1"] == default_run.summary["val_top1"]
    assert abs(report["loss"] - default_run.summary["val_loss"]) < 1e-5


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_weights(default_run, run_cli):
    before = read_safetensors(default_run.dir / "model.safetensors")
    result = run_cli("train", "--resume", default_run.dir, "--json")
    assert result.code == 0
    summary = json.loads(result.out)
    assert summary["epochs"] == default_run.summary["epochs"]
    assert summary["val_top1"] == default_run.summary["val_top1"]
    after = read_safetensors(default_run.dir / "model.safetensors")
    assert after[1] == before[1]  # same metadata
    assert (
        all(torch.equal(after[0][k], before[0][k]) for k in before[0]) and after[0].keys() == before[0].keys()
    )


def test_eval_of_a_bare_weights_file_preprocesses_from_its_metadata(default_run, tmp_path, run_cli):
    import shutil

    weights = shutil.copy(default_run.dir / "model.safetensors", tmp_path / "digits.safetensors")
    result = run_cli("eval", weights, "--json")
    assert result.code == 2 and "pass --data" in result.err
    result = run_cli("eval", weights, "--data", "digits", "--json", "--out", tmp_path)
    assert result.code == 0
    report = json.loads(result.out)
    assert report["top1"] == default_run.summary["val_top1"] and report["count"] == 360
    assert (tmp_path / "confusion_matrix.png").is_file()
