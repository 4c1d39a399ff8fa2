"""evaluate(): top-1, top-5, loss and the confusion matrix against hand-computed values."""

import math

import pytest
import torch

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
