"""Weights from the rest of the ecosystem load into our networks and compute what they computed
there: the oracles are torchvision's and timm's own modules and a re-typed CIFAR reproduction."""

import json

import pytest
import torch
import torchvision

from cifar_reference import CifarReferenceResNet, randomize_bn_statistics
from resnets import create_model, load_weights
from resnets.errors import WeightsError
from resnets.export import export
from resnets.train.build import build_model
from resnets.train.config import TrainConfig
from resnets.weights import load_model, read_safetensors, save_weights
from resnets.weights.format import meta_for_model


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory):
    """torchvision's resnet18 (random init, non-trivial BN statistics) saved as users save it."""
    torch.manual_seed(1)
    tv = randomize_bn_statistics(torchvision.models.resnet18())
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return tv, path


def test_torchvision_resnet18_state_dict_gives_torchvision_logits(torchvision_resnet18):
    tv, path = torchvision_resnet18
    ours = create_model("resnet18")
    meta = load_weights(ours, path)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(tv, x), rtol=0, atol=1e-5)
    assert meta.spec is None  # a foreign file brings no metadata


@pytest.mark.parametrize("name", ["resnet18d", "resnet50d", "wide_resnet50_2", "resnext50_32x4d"])
def test_timm_training_checkpoint_gives_timm_logits(tmp_path, name):
    """timm's deep stem (conv1.0/1/3/4/6), avg-down shortcut, wide and grouped bottlenecks, in
    timm's train checkpoint wrapper."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    peer = randomize_bn_statistics(timm.create_model(name, pretrained=False))
    path = tmp_path / "checkpoint-3.pth.tar"
    torch.save({"epoch": 3, "arch": name, "state_dict": peer.state_dict(), "version": 2}, path)
    ours = create_model(name)
    load_weights(ours, path)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(_logits(ours, x), _logits(peer, x), rtol=0, atol=1e-5)


def test_cifar_reproduction_checkpoint_loads_into_resnet20_with_equal_outputs(tmp_path):
    """DataParallel `module.` prefix, {"state_dict": ...} wrapper, `linear` head, option-A
    shortcuts without parameters, and no BN batch counters (saved before PyTorch 0.4.1)."""
    torch.manual_seed(3)
    ref = randomize_bn_statistics(CifarReferenceResNet())
    state = {"module." + k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet20-12fca82f.th"
    torch.save({"state_dict": state, "best_prec1": 91.7}, path)
    ours = create_model("resnet20")
    load_weights(ours, path)
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(_logits(ours, x), _logits(ref, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"model": sd, "optimizer": {}, "epoch": 89}, id="torchvision-references"),
        pytest.param(lambda sd: {"state_dict": {"model." + k: v for k, v in sd.items()}}, id="lightning"),
        pytest.param(lambda sd: {"_orig_mod." + k: v for k, v in sd.items()}, id="torch-compile"),
        pytest.param(lambda sd: {"model_state_dict": {"module." + k: v for k, v in sd.items()}}, id="ddp"),
    ],
)
def test_wrapped_and_prefixed_checkpoints_load_the_same_tensors(tmp_path, wrap):
    source = create_model("resnet20")
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(source.state_dict()), path)
    target = create_model("resnet20")
    load_weights(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_wrong_head_size_lists_keys_with_both_shapes_and_reset_head_keeps_the_rest(torchvision_resnet18):
    tv, path = torchvision_resnet18
    ten = create_model("resnet18", num_classes=10)
    with pytest.raises(WeightsError) as error:
        load_weights(ten, path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert "fc.weight (file (1000, 512), model (10, 512))" in message
    assert "fc.bias (file (1000,), model (10,))" in message
    assert message.endswith("--reset-head (reset_head=True) starts a fresh one")
    fresh_fc = ten.fc.weight.detach().clone()
    load_weights(ten, path, reset_head=True)
    assert torch.equal(ten.fc.weight, fresh_fc)
    assert torch.equal(ten.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)


def test_convert_with_reset_head_gives_a_new_head_of_the_asked_size(torchvision_resnet18, tmp_path, run_cli):
    tv, path = torchvision_resnet18
    out = tmp_path / "four.safetensors"
    base = ["convert", path, "--model", "resnet18", "--num-classes", "4", "--out", out]
    code, _, err = run_cli(*base)
    assert code == 2  # a 1000-class head does not fit 4 classes
    assert "fc.weight" in err and not out.exists()
    assert run_cli(*base, "--reset-head").code == 0
    model, meta = load_model(out)
    assert model.fc.out_features == 4 and meta.spec["num_classes"] == 4
    assert torch.equal(model.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)


def test_unmappable_keys_are_reported_by_name(tmp_path):
    path = tmp_path / "other.pth"
    state = create_model("resnet20").state_dict()
    state["classifier.weight"] = state.pop("fc.weight")
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing: fc\.weight; unexpected: classifier\.weight"):
        load_weights(create_model("resnet20"), path)


def test_load_model_builds_the_named_network_for_a_foreign_file(torchvision_resnet18):
    tv, path = torchvision_resnet18
    with pytest.raises(WeightsError, match="does not say which network"):
        load_model(path)
    model, meta = load_model(path, "cpu", model="resnet18")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(_logits(model, x), _logits(tv, x), rtol=0, atol=1e-5)
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert meta.classes == categories and meta.model == "resnet18"
    assert not model.training


def test_load_model_reset_head_gives_a_new_classifier_on_our_own_file(tmp_path):
    path = save_weights(create_model("resnet20"), tmp_path / "r20.safetensors")
    model, meta = load_model(path, num_classes=4, reset_head=True)
    assert model.fc.out_features == 4 and meta.spec["num_classes"] == 4


def test_training_starts_from_the_given_weights_with_a_new_head(tmp_path):
    source = create_model("resnet20")
    path = save_weights(source, tmp_path / "start.safetensors")
    config = TrainConfig(model="resnet20", weights=str(path), reset_head=True).validate()
    data = type("Data", (), {"num_classes": 3, "in_channels": 3})()
    model = build_model(config, data)
    assert model.fc.out_features == 3
    assert torch.equal(model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    with pytest.raises(WeightsError, match="fc.weight"):
        build_model(config.replace(reset_head=False), data)


def test_train_with_weights_builds_the_network_the_file_names(tmp_path, run_cli):
    """No --model: the run trains the file's network (not the default resnet20), says so in one
    line and records it; the oracle is the file's own spec and tensors."""
    torch.manual_seed(3)
    source = create_model("basic:2-1-1:4-8-16")
    path = save_weights(source, tmp_path / "start.safetensors")
    run = tmp_path / "run"
    args = ["train", "--weights", path, "--data", "synthetic", "--synthetic-count", "64"]
    args += ["--synthetic-classes", "4", "--input-size", "8", "--epochs", "1", "--batch-size", "16"]
    code, _, err = run_cli(*args, "--reset-head", "--out", run)
    assert code == 0, err
    assert [line for line in err.splitlines() if "--weights" in line] == [
        f"note: --weights {path} holds a basic:2-1-1:4-8-16: training that (not resnet20)"
    ]
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["model"] == "basic:2-1-1:4-8-16"
    assert record["model"]["spec"]["depths"] == [2, 1, 1] and record["model"]["spec"]["num_classes"] == 4
    _, meta = read_safetensors(run / "model.safetensors")
    assert meta.spec["depths"] == [2, 1, 1]
    shown = run_cli(*args, "--print-config", "json")  # what --print-config shows is what trains
    assert json.loads(shown.out)["model"] == "basic:2-1-1:4-8-16"


def test_summary_with_weights_checks_the_fit(run_cli, torchvision_resnet18):
    _, path = torchvision_resnet18
    code, out, _ = run_cli("summary", "resnet18", "--weights", path)
    assert code == 0 and "every tensor fits" in out
    code, _, err = run_cli("summary", "resnet34", "--weights", path)
    assert code == 2
    assert err.count("\n") == 1 and "layer1.2.bn1.weight" in err


def test_eval_reads_a_foreign_checkpoint_named_with_model(tmp_path, run_cli):
    path = tmp_path / "resnet20.th"
    torch.save(
        {"state_dict": {"module." + k: v for k, v in CifarReferenceResNet().state_dict().items()}}, path
    )
    args = ["eval", path, "--data", "synthetic", "--out", tmp_path, "--json"]
    code, _, err = run_cli(*args)
    assert code == 2 and "--model" in err
    code, out, _ = run_cli(*args, "--model", "resnet20")
    assert code == 0
    report = json.loads(out)
    assert report["count"] > 0 and 0 <= report["top1"] <= 1 and report["data"] == "synthetic"


def test_predict_and_export_read_a_torchvision_pth_named_with_model(torchvision_resnet18, tmp_path, run_cli):
    """The oracle: torchvision's own module on the same preprocessed pixels."""
    from PIL import Image
    from torchvision.transforms import v2

    from resnets.weights.sources import imagenet_classes

    tv, path = torchvision_resnet18
    image = tmp_path / "photo.png"
    g = torch.Generator().manual_seed(3)
    Image.fromarray(torch.randint(0, 256, (300, 400, 3), generator=g, dtype=torch.uint8).numpy()).save(image)
    code, _, err = run_cli("predict", path, image, "--json")
    assert code == 2 and "--model" in err
    code, out, _ = run_cli("predict", path, image, "--model", "resnet18", "--json", "--topk", "1")
    assert code == 0
    (top,) = json.loads(out)["topk"]
    preprocess = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    with torch.no_grad():
        expected = tv.eval()(preprocess(Image.open(image).convert("RGB"))[None]).softmax(1)
    assert top["class"] == imagenet_classes()[int(expected.argmax())]
    assert abs(top["probability"] - float(expected.max())) < 1e-3
    out = tmp_path / "resnet18.onnx"
    assert run_cli("export", path, "--model", "resnet18", "--format", "onnx", "--out", out).code == 0
    assert out.is_file()


# The preprocessing a network's family was published with. ImageNet: torchvision's eval transform
# for its ResNet weights. CIFAR-10: the per-channel statistics of its training set as published
# with the CIFAR reproductions (akamaster/pytorch_resnet_cifar10 and others), and 32 px.
IMAGENET = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
CIFAR10_MEAN, CIFAR10_STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "basic:1-1-1:4-8-16"])
def test_a_model_without_metadata_gets_the_same_metadata_from_save_export_and_load(tmp_path, name):
    """One meta_for_model: save_weights without metadata, export of a model without metadata and
    a foreign checkpoint named with --model all record the family's preprocessing."""
    model = create_model(name)
    meta = meta_for_model(model)
    if model.spec.stem == "cifar":
        assert (meta.mean, meta.std) == (pytest.approx(CIFAR10_MEAN), pytest.approx(CIFAR10_STD))
        assert (meta.input_size, meta.resize_size) == (32, None)
    else:
        preset = IMAGENET.transforms()
        assert (meta.mean, meta.std) == (pytest.approx(preset.mean), pytest.approx(preset.std))
        assert (meta.input_size, meta.resize_size) == (preset.crop_size[0], preset.resize_size[0])
    assert meta.model == name and meta.spec == model.spec.to_dict() and meta.classes is None

    saved = read_safetensors(save_weights(model, tmp_path / "saved.safetensors"))[1]
    assert saved == meta
    export(model.eval(), "safetensors", tmp_path / "exported.safetensors", input_size=32)
    exported = read_safetensors(tmp_path / "exported.safetensors")[1]
    assert exported.extra.pop("export")["format"] == "safetensors"
    assert exported == meta.__class__(**{**meta.__dict__, "input_size": 32})

    torch.save(model.state_dict(), tmp_path / "foreign.pth")
    _, loaded = load_model(tmp_path / "foreign.pth", model=name)
    assert loaded == meta_for_model(model, dataset_classes=True)
    assert (loaded.mean, loaded.std, loaded.input_size) == (meta.mean, meta.std, meta.input_size)
    if name == "resnet18":
        assert loaded.classes == IMAGENET.meta["categories"] and loaded.extra["classes_from"] == "imagenet-1k"
    elif name == "resnet20":
        assert loaded.classes[:2] == ["airplane", "automobile"] and loaded.extra["classes_from"] == "cifar-10"
    else:  # 10 outputs and a CIFAR stem, but a network of our own making: still CIFAR-10's shape
        assert len(loaded.classes) == 10


def test_a_one_channel_network_records_no_rgb_statistics_and_other_heads_no_class_names():
    gray = meta_for_model(create_model("resnet20", in_channels=1), dataset_classes=True)
    assert gray.mean is None and gray.std is None and gray.input_size == 32
    four = meta_for_model(create_model("resnet18", num_classes=4), dataset_classes=True)
    assert four.classes is None and "classes_from" not in four.extra and four.resize_size == 256
    assert meta_for_model(torch.nn.Linear(2, 2)) == meta_for_model(torch.nn.Linear(2, 2), "custom")


def test_a_file_without_tensors_names_its_top_level_keys(tmp_path):
    path = tmp_path / "notes.pth"
    torch.save({f"note{i}": i for i in range(10)}, path)
    with pytest.raises(WeightsError) as error:
        load_weights(create_model("resnet20"), path)
    keys = ", ".join(f"note{i}" for i in range(8))
    assert str(error.value) == f"{path}: no tensors found (top-level keys: {keys} and 2 more)"
