"""The fine-tuning kit: --freeze PARTS (and all-but-head, a linear probe) keeps those weights and
their BatchNorm statistics exactly; --freeze-bn keeps every BatchNorm's; --lr-backbone scales the
learning rate of everything but the classifier. The oracle is the starting weights file itself."""

import pytest
import torch
from safetensors.torch import load_file

from resnets import create_model
from resnets.train import resolve_recipe
from resnets.train.step import build_optimizer, set_lr
from resnets.weights.format import save_weights

MODEL = "basic:1-1-1:4-8-16"
ARGS = [
    "--model", MODEL, "--data", "synthetic", "--synthetic-count", "96", "--synthetic-classes", "4",
    "--input-size", "8", "--batch-size", "16", "--epochs", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """The weights fine-tuning starts from."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("start") / "start.safetensors"
    return save_weights(create_model(MODEL, num_classes=4), path)


def compare(start, run_dir):
    """{key: unchanged?} between the starting weights and the run's final ones."""
    before, after = load_file(start), load_file(run_dir / "model.safetensors")
    assert before.keys() == after.keys()
    return {k: torch.equal(before[k], after[k]) for k in before}


def test_frozen_parts_keep_their_weights_and_batchnorm_statistics_through_training_and_resume(
    tmp_path, start, run_cli
):
    run = tmp_path / "run"
    code, _, err = run_cli(
        "train", *ARGS, "--weights", start, "--freeze", "stem,layer1", "--out", run, "--epochs", "1"
    )
    assert code == 0, err
    assert "note: fine-tuning: frozen: stem, layer1, with their BatchNorm statistics; " in err
    code, _, err = run_cli("train", "--resume", run, "--epochs", "2")  # the freeze lasts through a resume
    assert code == 0, err
    same = compare(start, run)
    frozen = [k for k in same if k.startswith(("conv1.", "bn1.", "layer1."))]
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv2.weight", "layer1.0.bn2.running_var"} <= set(
        frozen
    )
    assert all(same[k] for k in frozen)  # weights, BN affine and running statistics alike
    assert not any(same[k] for k in ("layer2.0.conv1.weight", "layer3.0.bn2.running_mean", "fc.weight"))


def test_a_linear_probe_trains_the_classifier_only(tmp_path, start, run_cli):
    code, _, err = run_cli(
        "train", *ARGS, "--weights", start, "--freeze", "all-but-head", "--out", tmp_path / "run"
    )
    assert code == 0, err
    assert (
        "frozen: stem, layer1, layer2, layer3 (a linear probe), with their BatchNorm statistics; 68 of" in err
    )
    same = compare(start, tmp_path / "run")
    assert sorted(k for k, unchanged in same.items() if not unchanged) == ["fc.bias", "fc.weight"]


def test_lr_backbone_on_a_linear_probe_says_it_has_nothing_to_scale():
    from resnets.train.freeze import apply_freeze, describe_freeze

    model = create_model("basic:1-1-1:4-8-16", num_classes=3)
    frozen = apply_freeze(model, "all-but-head", freeze_bn=False)
    line = describe_freeze(model, frozen, False, 0.1)
    assert "--lr-backbone 0.1 has nothing to scale (only the classifier trains)" in line
    partly = create_model("basic:1-1-1:4-8-16", num_classes=3)
    line = describe_freeze(partly, apply_freeze(partly, "stem", freeze_bn=False), False, 0.1)
    assert "all but the classifier at 0.1 x the learning rate" in line


def test_freeze_bn_keeps_every_batchnorm_as_it_started_and_trains_the_rest(tmp_path, start, run_cli):
    code, _, err = run_cli("train", *ARGS, "--weights", start, "--freeze-bn", "--out", tmp_path / "run")
    assert code == 0, err
    same = compare(start, tmp_path / "run")
    bn = [k for k in same if ".bn" in f".{k}" or "downsample.1" in k]
    assert bn and all(same[k] for k in bn)  # running mean/var, count, weight and bias
    convs = [k for k in same if "conv" in k and k.endswith("weight")]
    assert convs and not any(same[k] for k in convs)


def test_lr_backbone_scales_every_update_but_the_classifiers():
    """One plain SGD step: each parameter moves by -lr x scale x its gradient."""
    config = resolve_recipe(
        "default", model=MODEL, lr=0.1, lr_backbone=0.01, momentum=0.0, weight_decay=0.0, nesterov=False
    )
    model = create_model(MODEL, num_classes=4)
    optimizer = build_optimizer(model, config)
    set_lr(optimizer, 0.1)  # as the loop does before every step
    torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 8, 8)), torch.arange(8) % 4).backward()
    before = {n: (p.detach().clone(), p.grad.clone()) for n, p in model.named_parameters()}
    optimizer.step()
    for name, p in model.named_parameters():
        value, grad = before[name]
        scale = 1.0 if name.startswith("fc.") else 0.01
        torch.testing.assert_close(p.detach(), value - 0.1 * scale * grad, msg=name)
