"""Oracles: the paper's Table 1 (multiply-adds) and Table 6 (CIFAR parameter counts), and
PyTorch's own FLOP counter for every network we name."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from resnets import create_model, list_models, summary


def n_params(name: str, **overrides) -> int:
    return sum(p.numel() for p in create_model(name, device="meta", **overrides).parameters())


def test_resnet20_and_resnet56_have_the_exact_option_a_parameter_counts():
    assert n_params("resnet20") == 269_722
    assert n_params("resnet56") == 853_018


@pytest.mark.parametrize(
    "name, paper_millions",
    [
        ("resnet20", 0.27),
        ("resnet32", 0.46),
        ("resnet44", 0.66),
        ("resnet56", 0.85),
        ("resnet110", 1.7),
        ("resnet1202", 19.4),
    ],
)
def test_cifar_parameter_counts_match_table6(name, paper_millions):
    decimals = len(str(paper_millions).split(".")[1])
    assert round(n_params(name) / 1e6, decimals) == paper_millions


@pytest.mark.parametrize(
    "name, paper_macs",
    [("resnet18", 1.81e9), ("resnet50", 4.09e9), ("resnet50_v1", 3.86e9), ("resnet152_v1", 11.28e9)],
)
def test_multiply_adds_match_the_issue_reference_within_one_percent(name, paper_macs):
    assert summary(name, input_size=224).macs == pytest.approx(paper_macs, rel=0.01)


@pytest.mark.parametrize(
    "name, table1_gflops",
    [
        ("resnet18", 1.8),
        ("resnet34", 3.6),
        ("resnet50_v1", 3.8),
        ("resnet101_v1", 7.6),
        ("resnet152_v1", 11.3),
    ],
)
def test_summary_reproduces_table1_flops_column_for_v1_networks(name, table1_gflops):
    # Table 1's "FLOPs" are multiply-adds to one decimal, sometimes truncated (3.66 -> 3.6)
    # and sometimes rounded (7.57 -> 7.6): we agree to within that last digit.
    assert abs(summary(name, input_size=224).macs / 1e9 - table1_gflops) < 0.1


# resnet1202 is resnet110's code path with 11x the blocks, and 14 s under the flop counter.
@pytest.mark.parametrize("name", [n for n in list_models() if n != "resnet1202"])
def test_summary_macs_equal_pytorch_flop_counter(name):
    model = create_model(name, device="meta").eval()
    size = 32 if model.spec.stem == "cifar" else 224
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, 3, size, size, device="meta"))
    assert summary(name, input_size=size).macs * 2 == counter.get_total_flops()


def test_summary_params_equal_module_parameters():
    for name in ["resnet50", "resnet20", "preact_resnet164", "resnext50_32x4d", "resnet50d"]:
        assert summary(name).params == n_params(name)


def test_v1_and_v1_5_differ_only_in_where_the_stride_sits():
    assert n_params("resnet50") == n_params("resnet50_v1")
    assert summary("resnet50").macs > summary("resnet50_v1").macs
