"""Oracles: the paper's Table 1 (multiply-adds) and Table 6 (CIFAR parameter counts), the CIFAR
reproduction's network, torchvision's published parameter and GFLOPS figures, and PyTorch's own
FLOP counter for every network we name."""

import pytest
import torch
from reference_names import TORCHVISION_NAMES
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model_weights

from cifar_reference import CifarReferenceResNet
from resnets import create_model, list_models, summary


def n_params(name: str, **overrides) -> int:
    return sum(p.numel() for p in create_model(name, device="meta", **overrides).parameters())


@pytest.mark.parametrize("name, n", [("resnet20", 3), ("resnet56", 9), ("resnet110", 18)])
def test_cifar_option_a_parameter_counts_equal_the_reference_reproduction(name, n):
    with torch.device("meta"):
        reference = CifarReferenceResNet((n, n, n))
    assert n_params(name) == sum(p.numel() for p in reference.parameters())


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


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_params_and_macs_match_torchvision_published_figures(name):
    # torchvision's weight metadata: `num_params`, and `_ops` = GFLOPS at 224 px in its sense,
    # multiply-adds, to three decimals.
    meta = get_model_weights(name).DEFAULT.meta
    table = summary(name)
    assert table.params == meta["num_params"]
    assert table.macs / 1e9 == pytest.approx(meta["_ops"], abs=0.0005)


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


def table1_stage_macs(block: str, depths: tuple[int, ...], stride_on_1x1: bool) -> list[int]:
    """Multiply-adds per row of Table 1 at 224 px, by hand: a k x k conv from c_in to c_out
    channels producing an R x R map costs R * R * c_out * c_in * k * k."""
    macs = [112 * 112 * 64 * 3 * 7 * 7]  # conv1: 7x7, 64, stride 2
    cin = 64
    for stage, depth in enumerate(depths):
        w, r = 64 * 2**stage, 56 // 2**stage  # filters and output size of conv{stage + 2}_x
        r_in = 56 if stage == 0 else 2 * r
        total = 0
        for i in range(depth):
            if block == "basic":
                total += r * r * w * cin * 9 + r * r * w * w * 9
                cout = w
            else:
                cout = 4 * w
                first_at = r if (i > 0 or stride_on_1x1) else r_in  # v1.5 strides the 3x3
                total += first_at * first_at * w * cin + r * r * w * w * 9 + r * r * cout * w
            if cin != cout or (i == 0 and stage > 0):
                total += r * r * cout * cin  # option B projection
            cin = cout
        macs.append(total)
    return macs + [cin * 1000]  # fc


@pytest.mark.parametrize(
    "name, block, depths, v1",
    [
        ("resnet34", "basic", (3, 4, 6, 3), True),
        ("resnet50", "bottleneck", (3, 4, 6, 3), False),
        ("resnet50_v1", "bottleneck", (3, 4, 6, 3), True),
        ("resnet152_v1", "bottleneck", (3, 8, 36, 3), True),
    ],
)
def test_summary_macs_per_row_equal_table1_arithmetic(name, block, depths, v1):
    assert [row.macs for row in summary(name).stages] == table1_stage_macs(block, depths, v1)


# resnet1202 is resnet110's code path with 11x the blocks, and 14 s under the flop counter;
# preact_resnet1001 is preact_resnet164's with 6x.
@pytest.mark.parametrize("name", [n for n in list_models() if n not in ("resnet1202", "preact_resnet1001")])
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
