"""The command line as users run it: `main()` in-process for speed, and one real subprocess."""

import json
import subprocess
import sys

import pytest

from resnets import list_models, summary


def test_list_json_has_every_model_with_measured_params(run_cli):
    code, out, _ = run_cli("list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == list_models()
    assert rows["resnet56"]["params"] == 853_018
    assert rows["resnet50"]["family"] == "imagenet" and rows["resnet20"]["input_size"] == 32


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


def test_summary_overrides_apply(run_cli):
    _, out, _ = run_cli("summary", "resnet20", "--shortcut", "B", "--json")
    assert json.loads(out)["params"] > 269_722


@pytest.mark.parametrize(
    "args",
    [
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
