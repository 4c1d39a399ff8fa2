"""timm's habits on our models, against timm itself: headless networks (num_classes=0),
get_classifier / reset_classifier, list_models' patterns and the pretrained config that
timm.data reads to build the evaluation transform."""

import json

import pytest
import torch
from PIL import Image
from torch import nn

from cifar_reference import randomize_bn_statistics
from resnets import create_model, list_models
from resnets.errors import SpecError

timm = pytest.importorskip("timm")
from timm.data import create_transform, resolve_data_config  # noqa: E402


def test_num_classes_0_returns_timms_pooled_features():
    torch.manual_seed(0)
    theirs = randomize_bn_statistics(timm.create_model("resnet50", num_classes=0))
    ours = create_model("resnet50", num_classes=0).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # no fc.* keys on either side
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = ours(x)
        assert features.shape == (2, ours.num_features) == (2, 2048)
        assert torch.equal(features, theirs(x))
        assert torch.equal(features, ours.forward_head(ours.forward_features(x), pre_logits=True))
    assert isinstance(ours.get_classifier(), nn.Identity) and ours.num_classes == 0


def test_reset_classifier_replaces_the_head_and_the_spec_follows():
    torch.manual_seed(0)
    theirs = timm.create_model("resnet18").eval()
    ours = create_model("resnet18").eval()
    ours.load_state_dict(theirs.state_dict())
    body = {k: v.clone() for k, v in ours.state_dict().items() if not k.startswith("fc.")}
    ours.reset_classifier(5)
    theirs.reset_classifier(5)
    assert ours.get_classifier() is ours.fc and ours.fc.out_features == 5
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in body.items())  # the body is untouched
    assert ours.spec.num_classes == ours.pretrained_cfg["num_classes"] == 5
    assert list(create_model(ours.spec).state_dict()) == list(ours.state_dict())  # saved weights rebuild it
    x = torch.randn(1, 3, 64, 64)
    ours.reset_classifier(0, "")
    theirs.reset_classifier(0, "")
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x)) and ours(x).shape == (1, 512, 2, 2)  # no pooling left
    with pytest.raises(SpecError, match="needs pooled features"):
        ours.reset_classifier(5, "")
    with pytest.raises(SpecError, match="global_pool"):
        ours.reset_classifier(5, "max")


def test_reset_classifier_keeps_the_device_and_dtype():
    model = create_model("resnet20").to(torch.float64)
    model.reset_classifier(3)
    assert model.fc.weight.dtype == torch.float64
    assert model(torch.randn(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 3)


def test_list_models_filters_with_shell_patterns():
    assert list_models("resnet5*") == [
        "resnet50",
        "resnet50_v1",
        "resnet56",
        "resnet50b",
        "resnet50c",
        "resnet50d",
    ]
    assert list_models(["plain2*", "*1001"]) == ["plain20", "preact_resnet1001"]
    assert list_models("preact_*", exclude_filters=["*1*"]) == [
        "preact_resnet34",
        "preact_resnet50",
        "preact_resnet20",
        "preact_resnet56",
    ]
    assert list_models("ResNet50") == []  # case-sensitive, as fnmatch.fnmatchcase and timm
    assert list_models() == list_models("*") and "resnet1202" in list_models()


def test_list_takes_patterns_on_the_command_line(run_cli):
    code, out, _ = run_cli("list", "resnet5*", "--json")
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == list_models("resnet5*")
    code, _, err = run_cli("list", "resnet9*")
    assert (
        code == 2 and err.strip() == "resnets list: error: no network matches 'resnet9*'; see 'resnets list'"
    )


def test_timm_reads_our_pretrained_cfg_as_it_reads_torchvisions_resnet50():
    ours = create_model("resnet50", device="meta")
    theirs = timm.create_model("resnet50.tv_in1k", pretrained=False)
    keys = ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std", "num_classes", "pool_size")
    assert {k: ours.pretrained_cfg[k] for k in keys} == {k: theirs.pretrained_cfg[k] for k in keys}
    assert resolve_data_config({}, model=ours) == resolve_data_config({}, model=theirs)
    assert ours.default_cfg is ours.pretrained_cfg
    deep = create_model("resnet50d", device="meta")
    assert deep.pretrained_cfg["first_conv"] == timm.create_model("resnet50d").pretrained_cfg["first_conv"]


def test_a_cifar_networks_config_keeps_32_px_images_as_they_are():
    model = create_model("resnet20", in_channels=1, device="meta")
    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (1, 32, 32) and config["crop_pct"] == 1.0
    assert len(config["mean"]) == len(config["std"]) == 1
    image = Image.new("L", (32, 32), 128)
    x = create_transform(**config)(image)
    assert x.shape == (1, 32, 32)
    torch.testing.assert_close(x, torch.full((1, 32, 32), (128 / 255 - config["mean"][0]) / config["std"][0]))
    features = create_model("resnet50", features_only=True, device="meta")
    assert features.pretrained_cfg["input_size"] == (3, 224, 224)
