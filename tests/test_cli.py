"""The command line as users run it: `main()` in-process for speed, and one real subprocess."""

import json
import subprocess
import sys

import pytest
import torch

from cifar_reference import CifarReferenceResNet
from resnets import list_models, summary
from resnets.inspect.explain import format_explanation


def reference_params(n: int) -> int:
    """Parameters of the CIFAR reproduction's 6n+2-layer network (tests/cifar_reference.py)."""
    with torch.device("meta"):
        return sum(p.numel() for p in CifarReferenceResNet((n, n, n)).parameters())


def test_list_json_has_every_model_with_measured_params(run_cli):
    code, out, _ = run_cli("list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == list_models()
    assert rows["resnet56"]["params"] == reference_params(9)
    assert rows["resnet50"]["family"] == "imagenet" and rows["resnet20"]["input_size"] == 32


def test_list_table_has_a_row_per_model_in_human_units(run_cli):
    code, out, _ = run_cli("list")
    lines = out.splitlines()
    assert lines[0].split() == ["name", "family", "variant", "layers", "params", "MACs", "input"]
    assert len(lines) == 2 + len(list_models())
    resnet20 = lines[2 + list_models().index("resnet20")].split()
    macs = summary("resnet20", input_size=32).macs
    params = f"{reference_params(3) / 1e3:.2f}K"
    assert resnet20 == ["resnet20", "cifar", "paper", "20", params, f"{macs / 1e6:.2f}M", "32px"]


def test_summary_json_has_the_documented_keys_and_matches_the_api(run_cli):
    code, out, _ = run_cli("summary", "resnet50", "--json")
    data = json.loads(out)
    assert {"params", "macs", "flops", "stages"} <= set(data)
    for stage in data["stages"]:
        assert {"name", "output_size", "blocks", "params", "macs"} <= set(stage)
    assert [s["name"] for s in data["stages"]] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"]
    assert data["macs"] == summary("resnet50", input_size=224).macs
    assert data["stages"][2]["blocks"] == "[1x1, 128; 3x3, 128; 1x1, 512] x 4"


def test_summary_table_labels_macs_and_flops_and_explains_each_stage(run_cli):
    code, out, _ = run_cli("summary", "resnet18", "--explain", "--input-size", "200x300")
    assert code == 0
    assert "MACs" in out and "FLOPs" in out and "100x150" in out
    assert "conv3_x: " in out and "stride 2" in out and "x 2" in out


def test_summary_prints_the_api_table_and_explanation(run_cli):
    table = summary("resnet56")
    _, out, _ = run_cli("summary", "resnet56")
    assert out == f"{table}\n"
    _, out, _ = run_cli("summary", "resnet56", "--explain")
    assert out == f"{table}\n\n{format_explanation(table)}\n"


def test_summary_json_explains_each_stage_only_when_asked(run_cli):
    _, out, _ = run_cli("summary", "resnet20", "--json")
    assert all("explain" not in stage for stage in json.loads(out)["stages"])
    _, out, _ = run_cli("summary", "resnet20", "--json", "--explain")
    stages = json.loads(out)["stages"]
    assert [s["name"] for s in stages] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "fc"]
    assert "option A" in stages[2]["explain"] and "10 class scores" in stages[-1]["explain"]


def test_summary_overrides_apply(run_cli):
    _, out, _ = run_cli("summary", "resnet20", "--shortcut", "B", "--json")
    assert json.loads(out)["params"] > reference_params(3)
    _, out, _ = run_cli("summary", "resnet20", "--width-multiplier", "2", "--json")
    assert json.loads(out)["stages"][0]["blocks"] == "3x3, 32"


def test_summary_output_stride_keeps_the_last_maps_at_an_eighth(run_cli):
    """torchvision's replace_stride_with_dilation=[False, True, True]: conv4_x and conv5_x dilate
    instead of striding, so a 224-px image ends on a 28x28 map (224 / 8)."""
    code, out, _ = run_cli("summary", "resnet50", "--output-stride", "8", "--json")
    assert code == 0
    data = json.loads(out)
    assert [s["output_size"] for s in data["stages"][:-1]] == [
        [112, 112],
        [56, 56],
        [28, 28],
        [28, 28],
        [28, 28],
    ]
    assert data["stages"][-2]["downsampling"] == "1/8" and "output stride 8" in data["description"]
    assert data["params"] == summary("resnet50").params  # dilation adds no parameters


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "resnet50", "--output-stride", "12"],
        ["summary", "resnet5O"],
        ["summary", "resnet50", "--input-size", "16"],
        ["summary", "[3x3,64; 3y3,64]x2"],
        ["summary", "resnet50", "--input-size", "abc"],
        ["summary", "resnet50", "--shortcut", "Z"],
        ["nonsense"],
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(run_cli, args):
    code, _, err = run_cli(*args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err


def test_a_real_process_prints_no_traceback_for_a_bad_model():
    result = subprocess.run(
        [sys.executable, "-m", "resnets", "summary", "resnt50"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "resnets summary: error: unknown model 'resnt50'; did you mean 'resnet50' or 'resnet50d' or 'resnet50c'?"
    )
