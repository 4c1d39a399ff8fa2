"""Feature-map sizes, from hooks on the real module, against O = floor((I + 2P - K) / S) + 1."""

import pytest
import torch

from resnets import create_model, summary
from resnets.errors import InputError


def conv_out(i: int, k: int, s: int, p: int) -> int:
    return (i + 2 * p - k) // s + 1


def stage_outputs(name: str, h: int, w: int) -> list[tuple[int, int]]:
    model = create_model(name, device="meta").eval()
    sizes = []
    hooks = [s.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for s in model.stages]
    model(torch.empty(1, 3, h, w, device="meta"))
    for hk in hooks:
        hk.remove()
    return sizes


def expected_imagenet(i: int) -> list[int]:
    x = conv_out(i, 7, 2, 3)  # conv1
    x = conv_out(x, 3, 2, 1)  # max pool
    sizes = [x]
    for _ in range(3):
        x = conv_out(x, 3, 2, 1)  # first 3x3 of each later stage (v1.5)
        sizes.append(x)
    return sizes


def test_imagenet_stages_at_224_are_56_28_14_7_after_a_112_stem():
    table = summary("resnet50", input_size=224)
    assert [s.output_size[0] for s in table.stages[:-1]] == [112, 56, 28, 14, 7]


def test_cifar_stages_at_32_are_32_16_8():
    assert [h for h, _ in stage_outputs("resnet20", 32, 32)] == [32, 16, 8]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50_v1", "resnet50d"])
@pytest.mark.parametrize("h, w", [(225, 225), (97, 131), (33, 250), (64, 48)])
def test_odd_and_non_square_sizes_follow_the_formula(name, h, w):
    got = stage_outputs(name, h, w)
    assert got == list(zip(expected_imagenet(h), expected_imagenet(w)))


@pytest.mark.parametrize("size", [31, 33, 17])
def test_cifar_odd_sizes_follow_the_formula(size):
    x, expected = size, [size]
    for _ in range(2):
        x = conv_out(x, 3, 2, 1)
        expected.append(x)
    assert [h for h, _ in stage_outputs("resnet56", size, size)] == expected


def test_summary_reports_the_downsampling_so_far():
    table = summary("resnet34", input_size=224)
    assert [s.downsampling for s in table.stages] == [2, 4, 8, 16, 32, 32]


def test_too_small_input_names_the_minimum_size():
    with pytest.raises(InputError, match="at least 32"):
        summary("resnet50", input_size=31)
    with pytest.raises(InputError, match="at least 4"):
        create_model("resnet20")(torch.randn(2, 3, 3, 3))


def test_wrong_rank_channels_and_channels_last_are_explained():
    model = create_model("resnet18").eval()
    with pytest.raises(InputError, match="4-D"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(InputError, match="channels-last"):
        model(torch.randn(1, 64, 64, 3))
    with pytest.raises(InputError, match="expected 3 input channels"):
        model(torch.randn(1, 1, 64, 64))
