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
