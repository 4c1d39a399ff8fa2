"""Recipes resolve to the paper's numbers; any field can be overridden and printed."""

import json
import math

import pytest

from resnets.train import resolve_recipe
from resnets.train.schedule import Schedule
from resnets.train.step import build_optimizer


def test_paper_cifar_is_section_4_2():
    c = resolve_recipe("paper-cifar")
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size) == ("sgd", 0.1, 0.9, 1e-4, 128)
    assert (c.iterations, c.augment, c.pad, c.flip) == (64_000, "pad-crop", 4, True)
    schedule = Schedule.from_config(c, steps_per_epoch=50_000 // 128)
    assert schedule.total_steps == 64_000
    lrs = [schedule(i) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert c.warmup_until_error is None  # ResNet-20..56 start at 0.1 directly


CIFAR_110 = "[3x3,16; 3x3,16]x18, [3x3,32; 3x3,32]x18, [3x3,64; 3x3,64]x18"  # sec. 4.2's 6n+2, n = 18


@pytest.mark.parametrize(
    "model", ["resnet110", "resnet1202", "basic:18-18-18:16-32-64", CIFAR_110, "plain110", "preact_resnet164"]
)
def test_paper_cifar_warms_resnet110_and_1202_at_0_01_until_training_error_is_below_80_percent(model):
    """Decided from the network, however it is written: the zoo name, a spec, the paper's notation."""
    c = resolve_recipe("paper-cifar", model=model)
    assert (c.warmup_lr, c.warmup_until_error) == (0.01, 0.8)
    schedule = Schedule.from_config(c, steps_per_epoch=351)
    assert schedule(0, warmup_done=False) == schedule(399, warmup_done=False) == 0.01
    assert schedule(400, warmup_done=True) == 0.1
    assert schedule(32_000, warmup_done=True) == pytest.approx(0.01)


@pytest.mark.parametrize("model", ["resnet56", "basic:9-9-9:16-32-64", "resnet20", "resnet152"])
def test_paper_cifar_starts_shallower_or_imagenet_networks_at_0_1(model):
    c = resolve_recipe("paper-cifar", model=model)
    assert (c.warmup_lr, c.warmup_until_error) == (None, None)


def test_train_says_whether_the_paper_warm_up_is_on_and_why(run_cli):
    missing = ["--data", "cifar10", "--data-dir", "/nonexistent/resnets"]  # stops right after the note
    _, _, err = run_cli("train", "--recipe", "paper-cifar", "--model", "basic:18-18-18:16-32-64", *missing)
    note, error = err.splitlines()
    assert note == (
        "note: warm-up on: lr 0.01 until the training error is below 80%, then 0.1 "
        "(basic:18-18-18:16-32-64 has 110 layers; sec. 4.2 warms up networks of 110 layers or more)"
    )
    assert error.startswith("resnets train: error: cifar10 not found")
    _, _, err = run_cli("train", "--recipe", "paper-cifar", "--model", "resnet56", *missing)
    assert err.splitlines()[0] == (
        "note: warm-up off: resnet56 has 56 layers, fewer than 110 "
        "(sec. 4.2 warms up CIFAR networks of 110 layers or more)"
    )
    _, _, err = run_cli(
        "train", "--recipe", "paper-cifar", "--model", "resnet110", "--warmup-until-error", "none", *missing
    )
    assert err.startswith(
        "note: warm-up off, as set (--warmup-until-error none), although sec. 4.2 would warm up resnet110\n"
    )


def test_paper_cifar_2016_holds_0_01_for_the_first_400_iterations_then_the_2015_schedule():
    """He et al. 2016, appendix: 0.01 for the first 400 iterations, then back to 0.1."""
    c = resolve_recipe("paper-cifar-2016")
    assert c.model == "preact_resnet164" and c.warmup_until_error is None
    s = Schedule.from_config(c, steps_per_epoch=390)
    lrs = [s(i) for i in (0, 1, 200, 399, 400, 31_999, 32_000, 48_000, 63_999)]
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.01, 0.1, 0.1, 0.01, 0.001, 0.001])
    # the same warm-up on any recipe, from the command line; linear stays the default shape
    linear = Schedule.from_config(resolve_recipe("paper-cifar", warmup=400, warmup_lr=0.01), 390)
    assert linear(200) == pytest.approx(0.01 + 0.09 * 200 / 400)


def test_warmup_shape_is_a_flag_and_checked(run_cli):
    args = ["train", "--recipe", "paper-cifar", "--warmup", "400", "--warmup-lr", "0.01"]
    shown = json.loads(run_cli(*args, "--warmup-shape", "constant", "--print-config", "json").out)
    assert (shown["warmup"], shown["warmup_lr"], shown["warmup_shape"]) == (400, 0.01, "constant")
    assert run_cli(*args, "--warmup-shape", "cosine", "--print-config").code == 2


def test_warm_up_holds_the_low_lr_exactly_while_the_running_training_error_is_above_threshold(tmp_path):
    import csv

    from resnets.train import train

    c = resolve_recipe(
        "default",
        model="basic:1-1-1:4-8-16",
        data="synthetic",
        synthetic_count=160,
        synthetic_classes=4,
        input_size=8,
        batch_size=32,
        epochs=8,
        schedule="constant",
        warmup=0,
        lr=0.1,
        warmup_lr=0.02,
        warmup_until_error=0.5,
    )
    train(c, tmp_path / "run")
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    phases = [float(r["lr"]) for r in rows]
    switch = phases.index(0.1)
    assert 0 < switch and phases == [0.02] * switch + [0.1] * (len(rows) - switch)
    for r in rows[:switch]:  # still warming up at the epoch's end: its running error never fell below 50%
        assert 1 - float(r["train_top1"]) >= 0.5


def test_paper_imagenet_is_section_3_4():
    c = resolve_recipe("paper-imagenet")
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size, c.epochs) == (0.1, 0.9, 1e-4, 256, 90)
    assert (c.augment, c.input_size, c.flip, c.eval_crops) == ("scale", 224, True, 10)
    spe = math.ceil(1_281_167 / 256) - 1  # full batches of ImageNet-1k per epoch
    s = Schedule.from_config(c, steps_per_epoch=spe)
    assert s.total_steps == 90 * spe
    assert [s(30 * spe - 1), s(30 * spe), s(60 * spe - 1), s(60 * spe)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001]
    )


def test_paper_imagenet_scale_augmentation_samples_the_shorter_side_in_256_480_then_crops_224():
    from torchvision.transforms import v2

    from resnets.data.transforms import folder_train_transform

    t = folder_train_transform("scale", 224, pad=0, flip=True, mean=(0, 0, 0), std=(1, 1, 1))
    scale = next(s for s in t.transforms if isinstance(s, v2.RandomShortestSize))
    crop = next(s for s in t.transforms if isinstance(s, v2.RandomCrop))
    assert (min(scale.min_size), max(scale.min_size)) == (256, 480) and crop.size == (224, 224)


def test_modern_recipe_has_cosine_warmup_smoothing_mixing_ema_and_no_decay_on_bn_and_bias():
    c = resolve_recipe("modern")
    assert c.schedule == "cosine" and c.warmup > 0 and c.label_smoothing > 0
    assert c.mixup_alpha > 0 and c.cutmix_alpha > 0 and c.ema_decay is not None
    from resnets.models import create_model

    model = create_model("resnet20")
    groups = build_optimizer(model, c).param_groups
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in no_decay) == (p.ndim == 1), name  # BN weights/biases and the fc bias
    s = Schedule.from_config(c, steps_per_epoch=100)
    assert s(0) == pytest.approx(c.lr / 100) and s(500) == pytest.approx(c.lr)
    assert s(500 + (20_000 - 500) // 2) == pytest.approx(c.lr / 2, rel=1e-3) and s(19_999) < 1e-5


def test_command_line_overrides_any_field_and_prints_toml_or_json(run_cli):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    args = [
        "train",
        "--recipe",
        "paper-cifar",
        "--lr",
        "0.05",
        "--milestones",
        "10,20",
        "--no-flip",
        "--epochs",
        "5",
    ]
    result = run_cli(*args, "--print-config", "json")
    assert result.code == 0
    as_json = json.loads(result.out)
    result = run_cli(*args, "--print-config")
    assert result.code == 0
    as_toml = tomllib.loads(result.out)
    assert as_toml == {k: v for k, v in as_json.items() if v is not None}
    assert (as_json["lr"], as_json["milestones"], as_json["flip"]) == (0.05, [10.0, 20.0], False)
    assert (as_json["epochs"], as_json["iterations"], as_json["weight_decay"]) == (5.0, None, 1e-4)


def test_a_printed_config_file_reproduces_the_config(tmp_path, run_cli):
    pytest.importorskip("tomllib")
    (tmp_path / "run.toml").write_text(
        run_cli("train", "--recipe", "modern", "--model", "resnet32", "--print-config").out
    )
    expected = json.loads(
        run_cli("train", "--recipe", "modern", "--model", "resnet32", "--print-config", "json").out
    )
    result = run_cli("train", "--config", tmp_path / "run.toml", "--print-config", "json")
    assert json.loads(result.out) == {**expected}


def test_none_unsets_an_optional_field_and_bad_values_are_one_line_errors(run_cli):
    result = run_cli("train", "--recipe", "modern", "--ema-decay", "none", "--print-config", "json")
    assert result.code == 0
    assert json.loads(result.out)["ema_decay"] is None
    assert run_cli("train", "--schedule", "linear", "--print-config").code == 2
    result = run_cli("train", "--ema-decay", "2", "--print-config")
    assert result.code == 2
    assert "--ema-decay must be in (0, 1), got 2.0" in result.err


def test_a_config_written_before_the_width_rename_still_reads():
    """Runs recorded the width multiplier as "width" before it became "width_multiplier"."""
    from resnets.train.config import TrainConfig

    old = TrainConfig().to_dict()
    old["width"] = old.pop("width_multiplier")
    old["width"] = 0.5
    assert TrainConfig.from_dict(old).width_multiplier == 0.5


def test_train_help_says_which_split_paper_cifar_uses(run_cli):
    text = " ".join(run_cli("train", "--help").out.split())
    assert "paper-cifar trains on all 50,000 CIFAR training images" in text
    assert "--val-split 5000 holds out the 45k/5k" in text
