"""Promise 12: every bad call a user can make through the API is a ValueError that says what was
expected, and through the CLI one line with exit code 2. The per-case messages are proved in
tests/models (test_registry, test_notation, test_shapes) and tests/test_cli.py; this table holds
the promise itself over all five kinds in one place, for the API and for the CLI."""

import pytest
import torch

from resnets import create_model
from resnets.errors import ResNetsError
from resnets.models.notation import NotationError

resnet18 = create_model("resnet18").eval()


@pytest.mark.parametrize(
    "call, expected",
    [
        (lambda: create_model("resnett50"), "did you mean 'resnet50'"),
        (lambda: create_model("[3x3,64; 3y3,64]x2"), "at column 10: expected"),
        (lambda: resnet18(torch.randn(1, 1, 64, 64)), "expected 3 input channels"),
        (lambda: resnet18(torch.randn(3, 64, 64)), "4-D"),
        (lambda: resnet18(torch.randn(1, 3, 16, 16)), "at least 32"),
        (lambda: resnet18(torch.randn(1, 64, 64, 3)), "channels-last"),
    ],
    ids=["unknown-name", "bad-notation", "channels", "rank", "too-small", "nhwc-as-nchw"],
)
def test_a_bad_api_call_is_a_value_error_that_says_what_was_expected(call, expected):
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, ResNetsError)  # ours, on purpose, not an accident deep in torch
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bad_notation_points_at_the_offending_token():
    with pytest.raises(NotationError) as info:
        create_model("[3x3,64; 3x3,64]x2, [3x3,128; 3z3,128]x2")
    assert (info.value.column, info.value.token) == (31, "3z3")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["summary", "resnt50"], "did you mean 'resnet50'"),
        (["summary", "[3x3,64; 3y3,64]x2"], "at column 10"),
        (["summary", "resnet50", "--in-channels", "0"], "in_channels must be >= 1"),
        (["summary", "resnet50", "--input-size", "16"], "at least 32"),
        (["train", "--model", "resnt20", "--data", "synthetic"], "did you mean 'resnet20'"),
        (["bench", "--model", "[3x3,64; 3y3,64]x2", "--device", "cpu"], "at column 10"),
    ],
)
def test_a_bad_cli_call_is_one_line_with_exit_code_2(args, expected, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert expected in line, line
    assert list(tmp_path.iterdir()) == []
