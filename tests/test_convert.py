"""`resnets convert`: a foreign checkpoint becomes our safetensors with everything needed to use
it; the oracles are torchvision's module, weight metadata and transforms."""

import json

import pytest
import torch
import torchvision

from cifar_reference import CifarReferenceResNet, randomize_bn_statistics
from resnets.weights import load_model, read_safetensors


def test_convert_torchvision_round_trip_gives_its_logits_names_and_preprocessing(tmp_path, run_cli):
    torch.manual_seed(4)
    tv = randomize_bn_statistics(torchvision.models.resnet18())
    src, out = tmp_path / "resnet18-f37072fd.pth", tmp_path / "resnet18.safetensors"
    torch.save(tv.state_dict(), src)
    code, stdout, err = run_cli("convert", str(src), "--model", "resnet18", "--out", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["out"] == str(out)
    model, meta = load_model(out)  # no model name needed any more
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), rtol=0, atol=1e-5)
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    preset = weights.transforms()
    assert meta.classes == weights.meta["categories"]
    assert meta.mean == pytest.approx(preset.mean) and meta.std == pytest.approx(preset.std)
    assert meta.input_size == preset.crop_size[0] and meta.resize_size == preset.resize_size[0]
    assert meta.model == "resnet18" and meta.extra["converted_from"] == src.name


def test_convert_cifar_reproduction_gets_its_own_pipeline_cifar10_names_and_a_classes_file_overrides(
    tmp_path, run_cli
):
    """The reproduction's trainer.py evaluates the 32-px images as they are, normalised with
    ImageNet's mean/std (transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])),
    not with CIFAR-10's statistics that a CIFAR-looking architecture would suggest."""
    src = tmp_path / "resnet20.th"
    ref = CifarReferenceResNet()
    torch.save(
        {"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}, "best_prec1": 91.7}, src
    )
    out = tmp_path / "r20.safetensors"
    code, _, err = run_cli("convert", str(src), "--model", "resnet20", "--out", str(out))
    assert code == 0 and err == ""  # a recognised origin: nothing assumed, nothing to say
    _, meta = read_safetensors(out)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert meta.classes == names and meta.input_size == 32 and meta.resize_size is None
    assert meta.mean == [0.485, 0.456, 0.406] and meta.std == [0.229, 0.224, 0.225]
    assert meta.crop_pct is None and "akamaster" in meta.preprocess_from
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    assert (
        run_cli("convert", str(src), "--model", "resnet20", "--out", str(out), "--classes", str(classes))[0]
        == 0
    )
    assert read_safetensors(out)[1].classes == [f"c{i}" for i in range(10)]


def test_convert_failures_are_one_line_and_write_nothing(tmp_path, run_cli):
    src = tmp_path / "r20.pth"
    torch.save(CifarReferenceResNet().state_dict(), src)
    out = tmp_path / "out.safetensors"
    wrong_count = tmp_path / "three.txt"
    wrong_count.write_text("a\nb\nc\n")
    cases = [
        ["--model", "resnet32"],  # keys of a deeper net are missing
        [],  # a foreign file needs --model
        ["--model", "resnet20", "--classes", str(wrong_count)],
    ]
    for extra in cases:
        code, _, err = run_cli("convert", str(src), "--out", str(out), *extra)
        assert code == 2 and err.count("\n") == 1, (extra, err)
        assert not out.exists()
    code, _, err = run_cli("convert", str(src), "--model", "resnet20", "--out", str(tmp_path / "x.pth"))
    assert code == 2 and ".safetensors" in err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
