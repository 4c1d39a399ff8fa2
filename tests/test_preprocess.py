"""The evaluation pipeline as data: eval_transform against the pipelines of its sources (timm's
create_transform, torchvision's weights.transforms(), numpy by hand), images at the input size
left as they are, the record in weights files (old files included), and where a foreign file's
pipeline comes from."""

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from resnets import create_model
from resnets.errors import InputError
from resnets.infer import Classifier
from resnets.preprocess import Preprocess, eval_transform, normalize_batch
from resnets.weights import load_model, read_safetensors, save_weights
from resnets.weights.format import WeightsMeta
from resnets.weights.sources import recognise, timm_preprocess, torchvision_preprocess


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    smooth = rng.random((height // 8 + 1, width // 8 + 1, 3))
    pixels = np.kron(smooth, np.ones((8, 8, 1)))[:height, :width] * 200 + rng.random((height, width, 3)) * 55
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def by_hand(image: Image.Image, mean, std) -> torch.Tensor:
    x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return torch.from_numpy((x - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None])


@pytest.mark.parametrize("resize_size, crop_pct", [(37, None), (None, 0.875), (None, None)])
def test_an_image_at_the_input_size_reaches_the_network_as_it_is(resize_size, crop_pct):
    """A 32-px CIFAR image under any 32-px record: no 0.875 zoom, no crop; only the normalisation
    (numpy by hand)."""
    image = photo(32, 32)
    record = Preprocess(
        (32, 32), resize_size=resize_size, crop_pct=crop_pct, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25)
    )
    got = eval_transform(record)(image)
    torch.testing.assert_close(got, by_hand(image, record.mean, record.std), rtol=0, atol=1e-6)


def test_a_larger_image_is_resized_and_centre_cropped_as_timm_evaluates_it():
    """The oracle: timm's own evaluation transform for resnet50.a1_in1k (crop_pct 0.95, bicubic)."""
    timm_data = pytest.importorskip("timm.data")
    from timm.models import get_pretrained_cfg

    config = timm_data.resolve_data_config(
        {}, pretrained_cfg=get_pretrained_cfg("resnet50.a1_in1k").to_dict()
    )
    theirs = timm_data.create_transform(**config)
    record = timm_preprocess("resnet50.a1_in1k")
    assert (record.crop_pct, record.interpolation, record.input_size) == (0.95, "bicubic", (224, 224))
    for size in [(300, 400), (500, 260), (236, 240)]:  # at 224x224 we differ on purpose: no zoom
        image = photo(*size, seed=sum(size))
        torch.testing.assert_close(eval_transform(record)(image), theirs(image), rtol=0, atol=1e-6)


@pytest.mark.parametrize("entry", ["ResNet50_Weights.IMAGENET1K_V2", "ResNet18_Weights.IMAGENET1K_V1"])
def test_a_torchvision_record_gives_what_its_weights_transforms_give(entry):
    """The oracle: torchvision's weights.transforms() (resize 232 for the V2 weights, 256 for V1)."""
    enum_name, member = entry.split(".")
    theirs = getattr(torchvision.models, enum_name)[member].transforms()
    record = torchvision_preprocess(entry)
    assert record.resize_size == theirs.resize_size[0] and record.input_size == (224, 224)
    image = photo(333, 250, seed=7)
    torch.testing.assert_close(eval_transform(record)(image), theirs(image), rtol=0, atol=1e-6)


def test_a_torchvision_file_is_recognised_by_its_published_name():
    origin = recognise("downloads/resnet50-11ad3fa6.pth", None, {})
    assert origin.source == "torchvision ResNet50_Weights.IMAGENET1K_V2"
    assert origin.preprocess.resize_size == 232  # not the 256 of the V1 weights
    assert recognise("downloads/resnet50-renamed.pth", None, {}).preprocess is None


def test_a_per_pixel_mean_record_round_trips_through_a_weights_file_and_is_subtracted(tmp_path):
    """He et al. 2015, sec. 4.2: 'the per-pixel mean subtracted'. The mean image travels with the
    weights and eval_transform subtracts it pixel by pixel (numpy by hand)."""
    mean_image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    record = Preprocess((8, 8), normalize="per-pixel-mean", mean_image=mean_image, source="trained on x")
    model = create_model("basic:1-1-1:4-8-16")
    meta = WeightsMeta(model="m", spec=model.spec.to_dict())
    meta.preprocess = record
    _, loaded = read_safetensors(save_weights(model, tmp_path / "m.safetensors", meta))
    assert loaded.preprocess == record
    torch.testing.assert_close(loaded.preprocess.mean_image, mean_image)
    image = photo(8, 8, seed=2)
    expected = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0 - mean_image.numpy()
    got = eval_transform(loaded.preprocess)(image)
    torch.testing.assert_close(got, torch.from_numpy(expected), rtol=0, atol=1e-6)
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    torch.testing.assert_close(normalize_batch(loaded.preprocess, batch)[0], got, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="mean image"):
        Preprocess((8, 8), normalize="per-pixel-mean", mean_image=torch.zeros(3, 4, 4))


def test_a_weights_file_from_before_the_record_keeps_loading_with_what_its_fields_said(tmp_path):
    """An earlier run's model.safetensors: mean/std/input_size/resize_size keys and a sentence under
    'resnets.preprocess'. It reads as that resize-and-crop, and predicts."""
    model = create_model("basic:1-1-1:4-8-16", num_classes=3).eval()
    header = {
        "resnets.format": "1",
        "resnets.model": "basic:1-1-1:4-8-16",
        "resnets.spec": json.dumps(model.spec.to_dict()),
        "resnets.classes": json.dumps(["a", "b", "c"]),
        "resnets.mean": json.dumps([0.5, 0.4, 0.3]),
        "resnets.std": json.dumps([0.2, 0.2, 0.2]),
        "resnets.input_size": "12",
        "resnets.resize_size": "14",
        "resnets.color": '"RGB"',
        "resnets.preprocess": '"resize shorter side to resize_size, centre crop input_size"',
    }
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=header)
    _, meta = load_model(path)
    record = meta.preprocess
    assert (record.input_size, record.resize_size, record.interpolation) == ((12, 12), 14, "bilinear")
    assert record.mean == (0.5, 0.4, 0.3) and record.std == (0.2, 0.2, 0.2)
    image = photo(20, 30, seed=4)
    manual = image.resize((14, 21), Image.BILINEAR).crop((1, 4, 13, 16))  # 14 x 21, centre 12 x 12
    expected = by_hand(manual, record.mean, record.std)
    torch.testing.assert_close(eval_transform(record)(image), expected, rtol=0, atol=1e-6)
    assert len(Classifier(path, device="cpu").predict(image, topk=2)[0]) == 2


def test_a_timm_name_with_a_tag_builds_the_network_with_timms_pipeline(tmp_path):
    """--model resnet18.a1_in1k: our resnet18 (the same tensors as torchvision's and timm's), read
    the way timm evaluates that tag (crop_pct 0.95, bicubic), no assumption to announce."""
    timm = pytest.importorskip("timm")
    path = tmp_path / "weights.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    net, meta = load_model(path, model="resnet18.a1_in1k")
    assert meta.model == "resnet18" and net.spec.num_classes == 1000
    config = timm.data.resolve_data_config(
        {}, pretrained_cfg=timm.models.get_pretrained_cfg("resnet18.a1_in1k").to_dict()
    )
    record = meta.preprocess
    assert record.crop_pct == config["crop_pct"] and record.interpolation == config["interpolation"]
    assert record.mean == config["mean"] and not record.source.startswith("assumed")


def test_an_unknown_origin_is_said_in_one_line_and_the_flags_set_the_pipeline(tmp_path, run_cli):
    path = tmp_path / "mine.pth"
    torch.save(create_model("resnet20").state_dict(), path)
    out = tmp_path / "mine.safetensors"
    code, _, err = run_cli("convert", path, "--model", "resnet20", "--out", out)
    assert code == 0 and err.count("\n") == 1 and "assuming" in err and "--crop-pct" in err
    assert read_safetensors(out)[1].preprocess_from.startswith("assumed")

    flags = [
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--crop-pct",
        "0.9",
        "--interpolation",
        "bicubic",
    ]
    code, _, err = run_cli("convert", path, "--model", "resnet20", "--out", out, *flags)
    assert code == 0 and err == ""
    record = read_safetensors(out)[1].preprocess
    assert (record.mean, record.std) == ((0.5,) * 3, (0.25,) * 3)
    assert (record.crop_pct, record.interpolation, record.resize_size) == (0.9, "bicubic", None)

    code, _, err = run_cli("convert", path, "--model", "resnet20", "--out", out, "--crop-pct", "1.5")
    assert code == 2 and err.count("\n") == 1 and "crop-pct" in err


def test_predict_takes_the_same_flags_and_applies_them(tmp_path, run_cli):
    torch.manual_seed(0)
    model = create_model("basic:1-1-1:4-8-16").eval()
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    image = photo(32, 32, seed=9)
    image.save(tmp_path / "x.png")
    args = ["predict", path, tmp_path / "x.png", "--model", "basic:1-1-1:4-8-16", "--json"]
    code, out, err = run_cli(*args, "--mean", "0.3,0.3,0.3", "--std", "0.1,0.2,0.3")
    assert code == 0, err
    with torch.no_grad():
        expected = model(by_hand(image, [0.3] * 3, [0.1, 0.2, 0.3])[None]).softmax(1)[0]
    top = json.loads(out)["topk"][0]
    assert top["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
