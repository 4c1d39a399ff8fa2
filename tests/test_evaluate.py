"""evaluate(): top-1, top-5, loss and the confusion matrix against hand-computed values;
evaluate_run and `resnets eval` against the eager model on the data's own tensors."""

import json
import math

import pytest
import torch

from digits_model import save_digits_weights, trained_digits_model
from resnets.data.transforms import normalize
from resnets.evaluate import evaluate_run
from resnets.runtime.metrics import evaluate


class Fixed(torch.nn.Module):
    """Returns preset logits row by row, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen = 0

    def forward(self, x):
        out = self.logits[self.seen : self.seen + len(x)]
        self.seen += len(x)
        return out


def test_top1_top5_loss_and_confusion_match_hand_computation():
    logits = torch.tensor([[5.0, 1, 0, 0, 0, 0], [0, 0, 3, 2, 1, 0], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 0]])
    labels = torch.tensor([0, 3, 0, 5])
    x = torch.zeros(4, 1, 1, 1)
    result = evaluate(Fixed(logits), [(x[:2], labels[:2]), (x[2:], labels[2:])], 6)
    # top-1: row 0 right; rows 1, 2, 3 predict 2, 5 and 4.
    assert result.top1 == 0.25
    # top-5: rows 2 and 3 give their label the lowest of six scores.
    assert result.top5 == 0.5
    expected = -sum(torch.log_softmax(logits, 1)[i, labels[i]].item() for i in range(4)) / 4
    assert result.loss == pytest.approx(expected)
    assert (
        result.confusion[0, 0] == 1
        and result.confusion[3, 2] == 1
        and result.confusion[0, 5] == 1
        and result.confusion[5, 4] == 1
    )
    assert result.confusion.sum() == 4
    assert result.per_class(list("abcdef"))["a"] == 0.5 and result.per_class(list("abcdef"))["b"] is None


def test_ten_crop_batches_average_the_softmax_over_crops():
    crop_logits = torch.tensor([[2.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)  # one image, 10 crops
    x = torch.zeros(1, 10, 1, 1, 1)
    result = evaluate(Fixed(crop_logits), [(x, torch.tensor([1]))], 2)
    p = (5 * torch.softmax(torch.tensor([2.0, 0.0]), 0) + 5 * torch.softmax(torch.tensor([0.0, 1.0]), 0)) / 10
    assert result.top1 == float(p[1] > p[0])
    assert result.loss == pytest.approx(-math.log(p[1].item()))


def test_evaluate_run_writes_the_confusion_matrix_only_where_told_and_eval_puts_it_by_the_weights(
    tmp_path, run_cli
):
    weights = save_digits_weights(tmp_path)
    report = evaluate_run(weights, data="digits", device="cpu")
    assert "confusion_matrix" not in report and list(tmp_path.iterdir()) == [weights]
    # The oracle: the eager model on the held-out digits' own tensors.
    model, _, data = trained_digits_model()
    with torch.no_grad():
        predicted = model(normalize(data.val.images, data.mean, data.std)).argmax(1)
    assert report["count"] == len(data.val)
    assert report["top1"] == pytest.approx(
        (predicted == data.val.labels).float().mean().item(), abs=1.5 / len(data.val)
    )

    folder = tmp_path / "figures"
    report = evaluate_run(weights, data="digits", device="cpu", out=folder)
    assert report["confusion_matrix"] == str(folder / "confusion_matrix.png")
    assert (folder / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"

    code, out, err = run_cli("eval", weights, "--data", "digits", "--device", "cpu")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{weights} on digits: {len(data.val)} images"
    assert (
        lines[1]
        == f"top-1 {100 * report['top1']:.2f}%  top-5 {100 * report['top5']:.2f}%  loss {report['loss']:.4f}"
    )
    assert lines[-1] == f"confusion matrix: {tmp_path / 'confusion_matrix.png'}"
    assert (tmp_path / "confusion_matrix.png").is_file()


def _three_class_weights(tmp_path):
    """A small network of classes cat, dog, zebra, reading 16-px images as they are."""
    from cifar_reference import randomize_bn_statistics
    from resnets import create_model
    from resnets.preprocess import Preprocess
    from resnets.weights import WeightsMeta, save_weights

    torch.manual_seed(5)
    model = randomize_bn_statistics(create_model("basic:1-1-1:4-8-16", num_classes=3))
    meta = WeightsMeta(model="basic:1-1-1:4-8-16", spec=model.spec.to_dict(), classes=["cat", "dog", "zebra"])
    meta.preprocess = Preprocess(
        (16, 16), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), source="trained on test"
    )
    return model, save_weights(model, tmp_path / "three.safetensors", meta)


def test_eval_on_a_folder_of_class_folders_matches_classes_by_name_and_counts_the_confusion(
    tmp_path, run_cli
):
    """DIR/zebra and DIR/cat (no train/val layout, no dog): every image is evaluated, 'zebra' is the
    weights' class 2 although it is the folder listed second. The oracle: numpy preprocessing and
    the eager model, counted by hand."""
    import numpy as np
    from PIL import Image

    model, weights = _three_class_weights(tmp_path)
    rng = np.random.default_rng(0)
    expected = torch.zeros(3, 3, dtype=torch.int64)
    mean, std = np.float32([0.5, 0.4, 0.3])[:, None, None], np.float32([0.2, 0.25, 0.3])[:, None, None]
    for name, label in (("zebra", 2), ("cat", 0)):
        (tmp_path / "test" / name).mkdir(parents=True)
        for i in range(6):
            pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "test" / name / f"{i}.png")
            x = torch.from_numpy((pixels.transpose(2, 0, 1) / np.float32(255) - mean) / std)[None]
            with torch.no_grad():
                expected[label, int(model.eval()(x.float()).argmax())] += 1
    code, out, err = run_cli("eval", weights, "--data", tmp_path / "test", "--json", "--device", "cpu")
    assert code == 0, err
    report = json.loads(out)
    assert report["count"] == 12 and report["classes_matched_by"] == "name"
    assert report["confusion"]["classes"] == ["cat", "dog", "zebra"]
    assert report["confusion"]["counts"] == expected.tolist()
    assert report["top1"] == pytest.approx(int(expected.diagonal().sum()) / 12)
    assert report["per_class"]["dog"] is None

    (tmp_path / "test" / "horse").mkdir()
    Image.fromarray(pixels).save(tmp_path / "test" / "horse" / "0.png")
    code, _, err = run_cli("eval", weights, "--data", tmp_path / "test", "--device", "cpu")
    assert code == 2 and err.count("\n") == 1
    assert "horse" in err and "cat, dog, zebra" in err and "cat, horse, zebra" in err


def test_multiscale_testing_averages_each_images_softmax_over_the_scales():
    small = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # two images at the first scale
    large = torch.tensor([[0.0, 3.0], [0.0, 2.0]])  # the same two at the second
    model = Fixed(torch.cat([small, large]))
    x, y = torch.zeros(1, 1, 1, 1), torch.tensor([0, 1])
    scales = [[(x, y[:1]), (x, y[1:])], [(x, y[:1]), (x, y[1:])]]
    from resnets.runtime.metrics import evaluate_multiscale

    result = evaluate_multiscale(model, scales, 2)
    p = (torch.softmax(small, 1) + torch.softmax(large, 1)) / 2
    assert result.loss == pytest.approx(-(p[0, 0].log() + p[1, 1].log()).item() / 2)
    assert result.top1 == ((p[0].argmax() == 0).item() + (p[1].argmax() == 1).item()) / 2


def test_eval_multi_scale_runs_the_whole_image_at_each_of_the_papers_scaled_sizes(tmp_path, run_cli):
    """Sec. 3.4: shorter side in {224, 256, 384, 480, 640} (for a network trained at 8 px:
    8, 9, 14, 17, 23), the whole image (fully convolutional), softmax scores averaged."""
    import json

    import numpy as np
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    model, mean, std = tiny_weights(tmp_path / "w.safetensors")
    rng = np.random.default_rng(0)
    expected_loss, images = 0.0, []
    for split in ("train", "val"):
        for label, (h, w) in zip(["a", "b"], [(10, 14), (12, 9)]):
            (tmp_path / "data" / split / label).mkdir(parents=True)
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / split / label / "0.png")
            if split == "val":
                images.append((torch.as_tensor(pixels).permute(2, 0, 1), ["a", "b"].index(label)))
    for image, label in images:
        probs = []
        for side in (8, 9, 14, 17, 23):
            x = TF.resize(image, [side], antialias=True).float() / 255
            x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
            with torch.no_grad():
                probs.append(torch.softmax(model(x[None]), 1)[0])
            assert min(x.shape[1:]) == side
        expected_loss -= torch.stack(probs).mean(0)[label].log().item() / len(images)
    result = run_cli(
        "eval", tmp_path / "w.safetensors", "--data", tmp_path / "data", "--multi-scale", "--json",
        "--device", "cpu", "--workers", "0", "--out", tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["scales"] == [8, 9, 14, 17, 23]
    assert report["loss_multiscale"] == pytest.approx(expected_loss, rel=1e-5)
    assert report["loss_multiscale"] != pytest.approx(report["loss"], rel=1e-3)  # not the centre crop


def test_multi_scale_testing_of_in_memory_data_is_a_one_line_error():
    from resnets.data import load_data, make_loader
    from resnets.errors import DataError

    with pytest.raises(DataError, match="multi-scale testing needs an image folder"):
        make_loader(load_data("synthetic", synthetic_count=100), "val", batch_size=4, scale=32)


def test_weights_recorded_without_a_resize_are_evaluated_on_whole_folder_images(tmp_path, run_cli):
    """A CIFAR-style network (input 8, no resize size recorded) on an ImageFolder: eval sees the
    whole image, as predict does and as it was trained, not a centre crop of a 9-px resize."""
    import json

    import numpy as np
    from PIL import Image

    model, mean, std = tiny_weights(tmp_path / "w.safetensors")
    rng = np.random.default_rng(1)
    loss = 0.0
    for split in ("train", "val"):
        for label in (0, 1):
            (tmp_path / "data" / split / "ab"[label]).mkdir(parents=True)
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / split / "ab"[label] / "0.png")
            x = torch.as_tensor(pixels).permute(2, 0, 1).float() / 255
            x = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
            with torch.no_grad():
                loss -= torch.log_softmax(model(x[None]), 1)[0, label].item() / 2 if split == "val" else 0
    result = run_cli(
        "eval", tmp_path / "w.safetensors", "--data", tmp_path / "data", "--json", "--workers", "0",
        "--device", "cpu", "--out", tmp_path,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out)["loss"] == pytest.approx(loss, rel=1e-5)


def tiny_weights(path):
    """A 2-class network for 8-px inputs saved at `path` with its mean/std, no resize size."""
    from resnets import create_model
    from resnets.weights import WeightsMeta, save_weights

    torch.manual_seed(0)
    model = create_model("basic:1-1-1:4-8-16", num_classes=2).eval()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    meta = WeightsMeta(
        model="tiny", spec=model.spec.to_dict(), classes=["a", "b"], mean=mean, std=std, input_size=8
    )
    save_weights(model, path, meta)
    return model, mean, std
