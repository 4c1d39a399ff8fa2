"""`resnets bench` smoke runs: tiny models, a few steps, the documented keys. Not a speed test."""

import collections
import json
import subprocess
import sys

import pytest
import torch

from resnets.bench.runner import BenchSettings, time_steps
from resnets.cli.bench import peer_names, steps_total
from resnets.train.step import TrainStep

TINY = ["--input-size", "32", "--batch-size", "2", "--steps", "2", "--warmup", "1", "--repeats", "1"]


def test_bench_json_reports_ours_and_the_ratio_to_torchvision(run_cli):
    code, out, _ = run_cli(
        "bench",
        "--model",
        "resnet18",
        "--device",
        "cpu",
        "--no-compile",
        "--compare",
        "torchvision",
        "--json",
        *TINY,
    )
    assert code == 0
    data = json.loads(out)
    names = [r["name"] for r in data["results"]]
    assert names == ["ours", "torchvision"]
    ours, peer = data["results"]
    assert data["ours_img_s"] == ours["img_s"] > 0
    assert data["ratio_vs_torchvision"] == pytest.approx(ours["img_s"] / peer["img_s"])
    assert ours["ms_step"] == pytest.approx(2 * 1000 / ours["img_s"])  # batch 2
    assert ours["mem_kind"] == "rss_peak_delta" and ours["peak_mem_mb"] is not None
    assert data["fast_config"]["mode"] == "train" and data["fast_config"]["optimizer"] == "SGD(fused=True)"
    assert data["environment"]["torch"] == torch.__version__


def test_bench_inference_against_onnxruntime_keeps_stdout_pure_json(run_cli):
    pytest.importorskip("onnxruntime")
    code, out, _ = run_cli(
        "bench",
        "--model",
        "resnet18",
        "--mode",
        "infer",
        "--device",
        "cpu",
        "--no-compile",
        "--compare",
        "torchvision,onnxruntime",
        "--json",
        *TINY,
    )
    assert code == 0
    data = json.loads(out)  # the ONNX exporter's progress lines must not leak into stdout
    assert [r["name"] for r in data["results"]] == ["ours", "torchvision", "onnxruntime"]
    assert not any(r["error"] for r in data["results"])
    assert data["ratio_vs_onnxruntime"] > 0 and data["ratio_vs_torchvision"] > 0
    assert data["fast_config"]["fold_bn"] and data["fast_config"]["mode"] == "infer"


def test_bench_table_shows_throughput_memory_and_ratios(run_cli):
    code, out, _ = run_cli(
        "bench", "--model", "resnet18", "--device", "cpu", "--compare", "torchvision", *TINY
    )
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert {"ours", "torchvision"} <= set(rows)
    assert rows["torchvision"].rstrip().endswith("x") and "failed" not in out
    assert "img/s" in out and "peak memory: process RSS" in out


def test_models_torchvision_lacks_skip_its_peer_with_a_note(run_cli):
    code, out, _ = run_cli("bench", "--model", "resnet20", "--device", "cpu", "--json", *TINY)
    data = json.loads(out)
    assert code == 0 and [r["name"] for r in data["results"]] == ["ours"]
    assert data["fast_config"]["compile"] is False  # CPU training is not compiled by default
    assert any("torchvision has no 'resnet20'" in n for n in data["notes"])
    assert not any(k.startswith("ratio_vs_") for k in data)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet5O"], "unknown model 'resnet5O'"),
        (["--compare", "timm"], "unknown peer 'timm'"),
        (["--input-size", "8", "--model", "resnet18"], "too small"),
        (["--batch-size", "0"], "at least 1"),
    ],
)
def test_user_errors_are_one_line(run_cli, args, message):
    code, out, err = run_cli("bench", "--device", "cpu", "--no-compile", "--steps", "1", *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_cuda_without_a_gpu_is_a_one_line_error(run_cli):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli("bench", "--device", "cuda", "--steps", "1")
    assert code == 2 and "CUDA is not available" in err


def test_warmup_steps_run_but_are_not_timed():
    calls = []
    ms, first = time_steps(lambda: calls.append(1), steps=6, warmup=4, repeats=3, device=torch.device("cpu"))
    assert len(calls) == 4 + 6 and ms >= 0 and first >= 0


def test_settings_default_to_resnet50_with_30_timed_steps_after_10_warm_up():
    s = BenchSettings()
    assert (s.model, s.steps, s.warmup) == ("resnet50", 30, 10)


def test_progress_bar_length_counts_warm_up_and_whole_chunks_and_peers_parse():
    assert steps_total(BenchSettings(steps=30, warmup=10, repeats=4)) == 10 + 4 * 7
    assert (
        peer_names(" torchvision, ,onnxruntime ") == ("torchvision", "onnxruntime") and peer_names("") == ()
    )


def test_bench_times_the_step_train_runs_built_by_the_same_builder(tmp_path, monkeypatch, run_cli):
    """The spy sits on the step class: every TrainStep is built by build_step (the one builder
    train and bench share), and both `resnets bench --mode train` and `resnets train` call one."""
    built, calls = [], []
    real_init, real_call = TrainStep.__init__, TrainStep.__call__

    def init(self, *args, **kwargs):
        built.append(sys._getframe(1).f_code.co_name)  # the function that constructed it
        real_init(self, *args, **kwargs)

    def call(self, micro_batches, step):
        calls.append(self)
        return real_call(self, micro_batches, step)

    monkeypatch.setattr(TrainStep, "__init__", init)
    monkeypatch.setattr(TrainStep, "__call__", call)
    code, out, _ = run_cli("bench", "--model", "basic:1-1-1:4-8-16", "--device", "cpu", "--json", *TINY)
    assert code == 0 and built == ["build_step"]
    timed = set(calls)
    assert len(timed) == 1 and len(calls) == 1 + 2  # warm-up and timed steps: all of them that step
    assert json.loads(out)["fast_config"]["optimizer"] == "SGD(fused=True)"
    train = [
        "train", "--model", "basic:1-1-1:4-8-16", "--data", "synthetic", "--synthetic-count", "40",
        "--synthetic-classes", "4", "--input-size", "32", "--batch-size", "8", "--epochs", "1",
        "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    assert run_cli(*train).code == 0
    assert built == ["build_step", "build_step"]
    assert len(set(calls) - timed) == 1 and len(calls) == 3 + 4  # 32 training images, 8 per step


def test_bench_runs_as_a_real_command():
    proc = subprocess.run(
        [sys.executable, "-m", "resnets", "bench", "--model", "basic:1-1-1:4-8-16", "--device", "cpu"]
        + ["--no-compile", "--json", *TINY],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ours_img_s"] > 0
    assert "ours:" not in proc.stderr  # stderr is a pipe, not a terminal: no progress bar


def test_cpu_inference_gains_an_int8_row_that_runs_the_quantized_export(run_cli, monkeypatch):
    """The INT8 row is our model as `resnets export --int8` writes it (the same quantize()),
    run by onnxruntime; it needs no torchvision twin. The spy proves the file it times is the
    quantized one."""
    pytest.importorskip("onnxruntime")
    import onnx

    from resnets.bench import runner

    made = []
    real_quantize = runner.quantize

    def spy(fp32, out, images, **kwargs):
        settings = real_quantize(fp32, out, images, **kwargs)
        made.append(collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node))
        return settings

    monkeypatch.setattr(runner, "quantize", spy)
    code, out, _ = run_cli(
        "bench", "--model", "resnet20", "--mode", "infer", "--device", "cpu", "--no-compile",
        "--compare", "onnxruntime,onnxruntime-int8", "--json", *TINY,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert [r["name"] for r in data["results"]] == ["ours", "onnxruntime-int8"]
    assert not data["results"][1]["error"] and data["ratio_vs_onnxruntime_int8"] > 0
    assert any("onnxruntime skipped: torchvision has no 'resnet20'" in n for n in data["notes"])
    (ops,) = made
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
