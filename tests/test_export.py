"""resnets export: each format reloaded by its own runtime (the oracle) and compared with the
eager PyTorch model on inputs the export's own verification never saw."""

from __future__ import annotations

import collections
import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

import resnets.export.exporter as export_module
import resnets.export.onnx as onnx_module
from cifar_reference import randomize_bn_statistics
from resnets.errors import ExportError
from resnets.export import export_onnx, onnx_session
from resnets.export.exporter import export
from resnets.models.create import create_model
from resnets.weights import WeightsMeta, load_model, save_weights

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

SIZE = 16  # resnet20 downsamples by 4: 16x16 inputs keep every test small
CLASSES = [f"class{i}" for i in range(10)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """One of our weights files, as `resnets train` writes them (with class names)."""
    model = randomize_bn_statistics(create_model("resnet20"), seed=1)
    path = tmp_path_factory.mktemp("run") / "model.safetensors"
    meta = WeightsMeta(
        model="resnet20",
        spec=model.spec.to_dict(),
        classes=CLASSES,
        mean=[0.5, 0.5, 0.5],
        std=[0.25, 0.25, 0.25],
        input_size=SIZE,
    )
    save_weights(model, path, meta)
    return path


@pytest.fixture(scope="module")
def eager(weights):
    return load_model(weights)[0]


def _inputs(batch: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(123 + batch)).to(dtype)


def _export(weights, fmt, out, **options):
    model, meta = load_model(weights)
    return export(model, fmt, out, meta=meta, **options)


def _ort_session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def static_onnx(weights):
    out = weights.with_name("static.onnx")
    return _export(weights, "onnx", out), out


def test_onnx_static_batch_matches_pytorch_in_onnxruntime(static_onnx, eager):
    report, path = static_onnx
    session = _ort_session(path)
    x = _inputs(1)
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(got, eager(x).detach().numpy(), rtol=0, atol=1e-4)
    assert [c.batch_size for c in report.checks] == [1]
    with pytest.raises(Exception, match="(?i)dimension"):
        session.run(None, {session.get_inputs()[0].name: _inputs(3).numpy()})


def test_onnx_file_passes_checker_and_carries_classes_mean_std_input_size(static_onnx):
    _, path = static_onnx
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["resnets.classes"]) == CLASSES
    assert json.loads(props["resnets.mean"]) == [0.5, 0.5, 0.5]
    assert json.loads(props["resnets.std"]) == [0.25, 0.25, 0.25]
    assert json.loads(props["resnets.input_size"]) == SIZE
    assert props["resnets.model"] == "resnet20"
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, SIZE, SIZE]


def test_onnx_dynamic_batch_matches_pytorch_in_onnxruntime_at_any_batch(weights, eager, tmp_path):
    out = tmp_path / "dynamic.onnx"
    report = _export(weights, "onnx", out, dynamic_batch=True)
    assert [c.batch_size for c in report.checks] == [1, 3]
    session = _ort_session(out)
    assert isinstance(session.get_inputs()[0].shape[0], str)  # a symbolic batch dimension
    for batch in (2, 5):
        x = _inputs(batch)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        np.testing.assert_allclose(got, eager(x).detach().numpy(), rtol=0, atol=1e-4)


def test_onnx_opset_below_18_is_honoured_via_the_torchscript_exporter(weights, eager, tmp_path):
    out = tmp_path / "old.onnx"
    report = _export(weights, "onnx", out, opset=13)
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert report.opset == 13 and "TorchScript" in report.exporter
    session = _ort_session(out)
    (got,) = session.run(None, {session.get_inputs()[0].name: _inputs(1).numpy()})
    np.testing.assert_allclose(got, eager(_inputs(1)).detach().numpy(), rtol=0, atol=1e-4)


def test_torchscript_reloads_and_matches_at_any_batch(weights, eager, tmp_path):
    out = tmp_path / "model.pt"
    _export(weights, "torchscript", out, dynamic_batch=True)
    extra = {"resnets.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    x = _inputs(2)
    torch.testing.assert_close(loaded(x), eager(x), rtol=0, atol=1e-4)
    assert json.loads(json.loads(extra["resnets.json"])["resnets.classes"]) == CLASSES


def test_exported_program_reloads_and_matches_at_any_batch(weights, eager, tmp_path):
    out = tmp_path / "model.pt2"
    report = _export(weights, "exported-program", out, dynamic_batch=True)
    assert [c.batch_size for c in report.checks] == [1, 3]
    module = torch.export.load(str(out)).module()
    for batch in (2, 5):
        x = _inputs(batch)
        torch.testing.assert_close(module(x), eager(x), rtol=0, atol=1e-4)


def test_fold_bn_removes_every_batchnorm_and_equals_unfused(weights, eager, tmp_path):
    out = tmp_path / "fused.pt"
    _export(weights, "torchscript", out, fold_bn=True)
    loaded = torch.jit.load(str(out))
    graph = str(loaded.inlined_graph)
    assert "aten::_convolution" in graph and "batch_norm" not in graph
    x = _inputs(1)
    torch.testing.assert_close(loaded(x), eager(x), rtol=0, atol=1e-4)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in eager.modules()) == 19  # untouched


def test_onnx_with_folded_bn_has_no_batchnorm_node_and_matches_in_onnxruntime(weights, eager, tmp_path):
    out = tmp_path / "fused.onnx"
    _export(weights, "onnx", out, fold_bn=True)
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "Conv" in ops and "BatchNormalization" not in ops
    x = _inputs(1)
    (y,) = _ort_session(out).run(None, {"image": x.numpy()})
    np.testing.assert_allclose(y, eager(x).detach().numpy(), rtol=0, atol=1e-4)


def test_fp16_onnx_holds_fp16_weights_and_stays_within_its_documented_tolerance(weights, eager, tmp_path):
    out = tmp_path / "fp16.onnx"
    report = _export(weights, "onnx", out, precision="fp16")
    graph = onnx.load(str(out)).graph
    conv_weights = {node.input[1] for node in graph.node if node.op_type == "Conv"}
    dtypes = {t.data_type for t in graph.initializer if t.name in conv_weights}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    x = _inputs(1)
    session = _ort_session(out)
    fp16_input = session.get_inputs()[0].type == "tensor(float16)"
    feed = x.numpy().astype(np.float16 if fp16_input else np.float32)
    (y,) = session.run(None, {"image": feed})
    expected = eager(x).detach().numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    assert 0 < np.abs(y.astype(np.float32) - expected).max() <= export_module.TOLERANCE["fp16"] * scale
    assert report.checks[0].max_abs_diff > 0


def test_safetensors_export_reloads_with_its_metadata(weights, eager, tmp_path):
    out = tmp_path / "copy.safetensors"
    _export(weights, "safetensors", out)
    model, meta = load_model(out)
    assert meta.classes == CLASSES and meta.input_size == SIZE
    x = _inputs(2)
    torch.testing.assert_close(model(x), eager(x), rtol=0, atol=0)


def test_bf16_torchscript_is_bf16_and_within_its_documented_tolerance(weights, eager, tmp_path):
    out = tmp_path / "bf16.pt"
    report = _export(weights, "torchscript", out, precision="bf16")
    loaded = torch.jit.load(str(out))
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    x = _inputs(1)
    y = loaded(x.bfloat16()).float()
    with torch.no_grad():
        expected = eager(x)
    scale = max(1.0, float(expected.abs().max()))
    assert 0 < (y - expected).abs().max() <= export_module.TOLERANCE["bf16"] * scale
    assert report.checks[0].max_abs_diff > 0  # the rounding is real, and was measured


@pytest.mark.parametrize(
    "fmt, options, message",
    [
        ("onnx", {"precision": "bf16"}, "bf16 is not available for onnx"),
        ("safetensors", {"precision": "fp16"}, "fp16 is not available for safetensors"),
        ("safetensors", {"fold_bn": True}, "--fold-bn"),
        ("torchscript", {"opset": 17}, "--opset applies to onnx only"),
    ],
)
def test_unsupported_combinations_are_refused_before_writing(weights, tmp_path, fmt, options, message):
    out = tmp_path / "never"
    with pytest.raises(ExportError, match=message):
        _export(weights, fmt, out, **options)
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_leaves_no_file_and_keeps_an_old_one(weights, tmp_path, monkeypatch):
    def broken_fold(model):  # a folding bug: one logit off by a little
        bad = copy.deepcopy(model)
        with torch.no_grad():
            bad.fc.bias[0] += 0.01
        return bad

    monkeypatch.setattr(export_module, "fold_batchnorm", broken_fold)
    out = tmp_path / "model.pt"
    out.write_bytes(b"previous export")
    with pytest.raises(ExportError, match="does not match the eager model"):
        _export(weights, "torchscript", out, fold_bn=True)
    assert out.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left


def test_export_onnx_and_its_session_run_what_eager_pytorch_runs(eager, tmp_path):
    """The two functions the onnxruntime peer of `resnets bench` shares with `resnets export`."""
    path = tmp_path / "bench.onnx"
    made = export_onnx(eager, _inputs(2), path, dynamic_batch=True)
    assert path.is_file() and made.opset >= 18 and made.exporter == "torch.onnx (dynamo)"
    session = onnx_session(path, threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    for batch in (1, 4):
        x = _inputs(batch)
        (y,) = session.run(None, {"image": x.numpy()})
        np.testing.assert_allclose(y, eager(x).detach().numpy(), rtol=0, atol=1e-4)
    old = export_onnx(eager, _inputs(1), None, opset=13)  # in memory only
    assert old.exporter == "torch.onnx (TorchScript)" and old.opset == 13
    assert [o.version for o in old.proto.opset_import if o.domain in ("", "ai.onnx")] == [13]
    assert [p.name for p in tmp_path.iterdir()] == ["bench.onnx"]


def test_an_onnx_file_of_another_opset_than_asked_is_refused(eager, monkeypatch, tmp_path):
    # As if the dynamo exporter were trusted below 18: it writes opset 18 whatever was asked.
    monkeypatch.setattr(onnx_module, "DYNAMO_MIN_OPSET", 7)
    with pytest.raises(ExportError, match="the exporter produced opset 18, not the requested 13"):
        export_onnx(eager, _inputs(1), tmp_path / "old.onnx", opset=13)
    assert list(tmp_path.iterdir()) == []


def test_cli_report_says_what_was_written_how_and_how_close_it_is(tmp_path, run_cli):
    out = tmp_path / "r20.pt"
    code, stdout, err = run_cli("export", "resnet20", "--format", "torchscript", "--out", out)
    assert code == 0, err
    lines = stdout.splitlines()
    size = out.stat().st_size
    assert lines[0] == f"wrote {out} ({size / 2**20:.1f} MiB)" and 2**20 <= size < 2**30
    assert lines[1] == "format: torchscript via torch.jit.trace; resnet20, input 1x3x32x32, fp32"
    tolerance = float(re.search(r"tolerance (\S+) ", lines[2]).group(1))
    assert lines[2].startswith("verified against the eager fp32 model") and tolerance >= 1e-4
    assert "(= 0.0001 x max(1, max |logit|)):" in lines[2]
    (diff,) = re.findall(r"^  batch 1: max abs diff (\S+)$", lines[3])
    assert len(lines) == 4 and float(diff) <= tolerance


@pytest.mark.parametrize("where", ["under-a-file", "missing-folder", "a-folder"])
def test_cli_unwritable_out_exits_2_with_one_line_and_writes_nothing(tmp_path, run_cli, where):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    out = {
        "under-a-file": blocker / "model.onnx",
        "missing-folder": tmp_path / "missing" / "model.onnx",
        "a-folder": tmp_path,
    }[where]
    code, _, err = run_cli("export", "resnet20", "--format", "onnx", "--out", out)
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_cli_missing_input_exits_2_with_one_line(tmp_path, run_cli):
    code, _, err = run_cli("export", tmp_path / "missing.safetensors", "--format", "onnx")
    assert code == 2
    err = err.strip().splitlines()
    assert len(err) == 1 and "no such run directory, weights file or model name" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_next_to_the_weights_and_reports_json(weights, run_cli):
    code, out, _ = run_cli("export", weights, "--format", "torchscript", "--json")
    assert code == 0
    report = json.loads(out)
    out = weights.with_name("model.pt")
    assert report["path"] == str(out) and out.is_file()
    assert report["size_bytes"] == out.stat().st_size
    assert report["max_abs_diff"] <= report["tolerance"]


# --- what the model contains decides the opsets; any failure is one line and leaves nothing ------


def test_cli_opset_9_for_option_a_is_refused_up_front_in_one_line(tmp_path, run_cli, capfd):
    """resnet20's option-A shortcut subsamples with a strided slice, an ONNX Slice with steps
    (opset 10): refused before exporting, naming the module and the range that works."""
    out = tmp_path / "r20.onnx"
    code, stdout, err = run_cli("export", "resnet20", "--format", "onnx", "--opset", "9", "--out", out)
    leaked = capfd.readouterr()
    assert code == 2 and stdout == ""
    assert err.strip() == (
        "resnets export: error: --opset 9 is too old for resnet20: option A's strided shortcut "
        "(layer2.0.downsample) is an ONNX Slice with steps, new in opset 10; "
        f"use 10 to {onnx.defs.onnx_opset_version()}"
    )
    assert leaked.out == leaked.err == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "opset, message", [(6, "too old: torch.onnx exports nothing older"), (99, "newer than")]
)
def test_opsets_outside_what_onnx_and_torch_know_are_refused(weights, tmp_path, opset, message):
    with pytest.raises(ExportError, match=message):
        _export(weights, "onnx", tmp_path / "m.onnx", opset=opset)
    assert list(tmp_path.iterdir()) == []


def test_option_b_exports_at_opset_9_and_runs_in_onnxruntime(tmp_path):
    """The floor is the model's, not a blanket one: without option A, opset 9 works."""
    model = randomize_bn_statistics(create_model("basic:1-1-1:8-16-32", shortcut="B"), seed=2).eval()
    report = export(model, "onnx", tmp_path / "b.onnx", opset=9, input_size=16)
    assert report.opset == 9 and report.max_abs_diff <= report.tolerance


def test_an_exporter_failure_is_one_line_exit_2_no_file_and_no_ir_dump(tmp_path, run_cli, capfd, monkeypatch):
    """Were the opset check wrong, the TorchScript exporter would fail at opset 9 after dumping
    the IR graph from C++ straight to file descriptor 2: the user still gets one line."""
    monkeypatch.setattr(onnx_module, "opset_range", lambda model=None, **_: (7, 28, ""))
    out = tmp_path / "r20.onnx"
    code, stdout, err = run_cli("export", "resnet20", "--format", "onnx", "--opset", "9", "--out", out)
    leaked = capfd.readouterr()
    assert code == 2 and stdout == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("resnets export: error: torch.onnx could not export the model at opset 9: step!=1")
    assert "Torch IR graph" not in leaked.err + leaked.out and leaked.err == leaked.out == ""
    assert list(tmp_path.iterdir()) == []


def test_a_failing_writer_or_verifier_is_one_line_and_third_party_output_is_swallowed(
    weights, tmp_path, run_cli, capfd, monkeypatch
):
    import logging
    import os

    def noisy_export(*args, **kwargs):
        logging.getLogger("torch.export").warning("a third-party warning")
        os.write(2, b"C++ chatter\n")
        print("progress")
        raise RuntimeError("first line of a long error\n" + "stack frame\n" * 300)

    monkeypatch.setattr(torch.export, "export", noisy_export)
    code, stdout, err = run_cli(
        "export", weights, "--format", "exported-program", "--out", tmp_path / "m.pt2"
    )
    leaked = capfd.readouterr()
    assert code == 2 and stdout == "" and leaked.out == leaked.err == ""
    assert err.strip() == (
        "resnets export: error: the exported-program export failed: first line of a long error"
    )
    monkeypatch.undo()

    def broken_session(path, threads=None):
        raise RuntimeError("[ONNXRuntimeError] : 10 : INVALID_GRAPH : Load model failed\nmore")

    monkeypatch.setattr(export_module, "onnx_session", broken_session)
    code, _, err = run_cli("export", weights, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "INVALID_GRAPH" in err
    assert list(tmp_path.iterdir()) == []
    assert logging.getLogger().manager.disable == logging.NOTSET  # logging switched back on


# --- INT8: calibrated on real images, judged by held-out top-1 -------------------------------------

SHARED_DATA = Path(
    os.environ.get("RESNETS_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)


def _int8_nodes(path) -> tuple[collections.Counter, list[tuple[int, int, int]]]:
    """The file's op counts, and per quantized conv weight (dtype, output channels, scales)."""
    proto = onnx.load(str(path))
    inits = {t.name: t for t in proto.graph.initializer}
    weights = []
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and inits.get(node.input[0]) is not None:
            w = inits[node.input[0]]
            if len(w.dims) == 4:  # a conv weight (N_out, C_in, kh, kw)
                scales = onnx.numpy_helper.to_array(inits[node.input[1]])
                weights.append((w.data_type, w.dims[0], scales.size))
    return collections.Counter(n.op_type for n in proto.graph.node), weights


def _onnx_top1(path, images: torch.Tensor) -> torch.Tensor:
    session = _ort_session(path)
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0] == 1
    parts = images.split(1) if fixed else [images]
    return torch.cat([torch.from_numpy(session.run(None, {name: p.numpy()})[0]).argmax(1) for p in parts])


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, run_cli):
    """A real `resnets train` run: a small network on the digits at 8 px, with its held-out split."""
    run = tmp_path_factory.mktemp("int8") / "run"
    code, _, err = run_cli(
        "train", "--model", "basic:1-1-1:8-16-32", "--epochs", "5", "--input-size", "8", "--out", run
    )
    assert code == 0, err
    return run


def test_int8_of_a_run_calibrates_on_its_data_and_reports_what_an_independent_count_finds(
    digits_run, run_cli
):
    """The oracle: the run's held-out images counted by `resnets eval` (fp32 top-1, how many), and
    the written file's top-1 counted here by onnxruntime on the digits' held-out split,
    normalised with the run's recorded statistics."""
    from resnets.data.digits import load_digits_data
    from resnets.data.transforms import normalize

    code, out, err = run_cli(
        "export", digits_run, "--format", "onnx", "--int8", "--max-accuracy-drop", "3", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    path = digits_run / "model-int8.onnx"
    assert report["path"] == str(path) and report["precision"] == "int8"
    assert json.loads((digits_run / "model-int8.onnx.json").read_text()) == report  # stored beside the file
    check = report["int8"]
    _, evaluated, _ = run_cli("eval", digits_run, "--json")
    evaluated = json.loads(evaluated)
    assert check["heldout_images"] == evaluated["count"] == 360  # all of the run's held-out split
    assert check["top1_fp32"] == pytest.approx(evaluated["top1"])
    assert check["calibration_images"] == 256 and check["data"] == "digits"

    model, meta = load_model(digits_run)
    val = load_digits_data(input_size=8).val
    x = normalize(val.images, meta.mean, meta.std)
    int8_top1 = _onnx_top1(path, x)
    with torch.no_grad():
        fp32_top1 = model(x).argmax(1)
    assert check["top1_int8"] == pytest.approx((int8_top1 == val.labels).float().mean().item())
    assert check["agreement"] == pytest.approx((int8_top1 == fp32_top1).float().mean().item())
    assert check["agreement"] >= 0.95

    ops, weights = _int8_nodes(path)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]
    assert weights and all(dtype == onnx.TensorProto.INT8 and n == scales for dtype, n, scales in weights)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["resnets.export"])["precision"] == "int8"
    assert json.loads(props["resnets.classes"]) == meta.classes


def test_int8_that_loses_too_much_is_refused_in_one_line_and_leaves_nothing(digits_run, run_cli, monkeypatch):
    """As if quantization had gone wrong: the 'quantized' file is another network's."""
    import resnets.export.exporter as exporter

    def wrong_network(fp32, out, images, **kwargs):
        for _ in images:  # calibration data is read as usual
            pass
        other = create_model("basic:1-1-1:8-16-32", num_classes=10, in_channels=1).eval()
        export_onnx(other, torch.randn(1, 1, 8, 8), out)
        return {
            "format": "QDQ",
            "weights": "-",
            "activations": "-",
            "calibration": "-",
            "reduce_range": False,
        }

    monkeypatch.setattr(exporter, "quantize", wrong_network)
    before = sorted(p.name for p in digits_run.iterdir())
    out = digits_run / "bad-int8.onnx"
    code, stdout, err = run_cli("export", digits_run, "--format", "onnx", "--int8", "--out", out)
    assert code == 2 and stdout == ""
    (line,) = err.strip().splitlines()
    assert re.fullmatch(
        r"resnets export: error: the INT8 model loses \d+\.\d\d points of top-1 \(\d+\.\d\d% -> \d+\.\d\d%\) "
        r"on 360 held-out images, more than the 1 allowed \(--max-accuracy-drop\); nothing written",
        line,
    )
    assert sorted(p.name for p in digits_run.iterdir()) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "torchscript", "--int8"], "--int8 writes ONNX"),
        (["--format", "onnx", "--int8", "--precision", "fp16"], "--int8 quantizes the fp32 model"),
        (["--format", "onnx", "--calibrate", "digits"], "--calibrate is for --int8"),
        (
            ["--format", "onnx", "--int8", "--opset", "11"],
            "--opset 11 is too old: INT8 per-channel weights need QuantizeLinear's axis",
        ),
        (
            ["--format", "onnx", "--int8", "--calibration-images", "0"],
            "--calibration-images must be at least 1",
        ),
    ],
)
def test_int8_requests_that_cannot_work_are_one_line_errors(weights, run_cli, args, message, tmp_path):
    code, _, err = run_cli("export", weights, *args, "--out", tmp_path / "m.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_int8_of_a_weights_file_outside_a_run_needs_data_to_calibrate_on(weights, run_cli, tmp_path):
    code, _, err = run_cli("export", weights, "--format", "onnx", "--int8", "--out", tmp_path / "m.onnx")
    assert code == 2 and "pass --calibrate DATA" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        "export",
        weights,
        "--format",
        "onnx",
        "--int8",
        "--calibrate",
        "digits",
        "--out",
        tmp_path / "m.onnx",
    )
    assert code == 2 and err.strip().endswith("digits: 1-channel images, but the model takes 3")
    assert list(tmp_path.iterdir()) == []


def test_int8_calibration_folder_without_a_held_out_part_is_one_line_without_train_flags(
    weights, run_cli, tmp_path
):
    flat = tmp_path / "flat"  # class folders, but no train/ and val/ or test/
    for name in CLASSES:
        (flat / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(flat / name / "a.png")
    out = tmp_path / "m.onnx"
    code, _, err = run_cli("export", weights, "--format", "onnx", "--int8", "--calibrate", flat, "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"--calibrate {flat}: no held-out images to verify on" in err
    assert "--val-split" not in err  # a train flag: export has none
    assert not out.exists()


def _cifar_folder(root: Path, per_class_train: int, per_class_test: int) -> Path:
    """ROOT/train/<class>/ and ROOT/test/<class>/: the first images of each class of the real
    CIFAR-10 JPEGs (read straight from the archives, nothing else unpacked)."""
    import tarfile

    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        taken: collections.Counter = collections.Counter()
        with tarfile.open(SHARED_DATA / "cifar10-jpg" / f"{split}.tar.gz") as archive:
            for member in archive:
                if len(taken) == 10 and min(taken.values()) >= per_class:
                    break  # every class has its images: the rest of the archive is not read
                parts = Path(member.name).parts
                if not member.isfile() or len(parts) < 3 or taken[parts[-2]] >= per_class:
                    continue
                taken[parts[-2]] += 1
                target = root / split / parts[-2] / parts[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    return root


@pytest.mark.skipif(
    not (SHARED_DATA / "cifar10-jpg").is_dir(), reason=f"no shared real data at {SHARED_DATA}"
)
def test_int8_resnet20_of_the_cifar_reproduction_keeps_its_top1_on_real_cifar10_jpegs(tmp_path, run_cli):
    """The published ResNet-20 weights of the CIFAR reproduction, converted, quantized with
    calibration on real CIFAR-10 training JPEGs, lose at most 0.5 points of top-1 on 500 real
    test JPEGs (docs/benchmarks.md has the whole test set). Oracle: the test images read here
    with PIL, normalised with the file's recorded statistics, run by onnxruntime and by the
    eager fp32 network."""
    from PIL import Image

    weights = tmp_path / "resnet20.safetensors"
    source = SHARED_DATA / "pretrained-cifar" / "resnet20-12fca82f.th"
    code, _, err = run_cli("convert", source, "--model", "resnet20", "--out", weights)
    assert code == 0, err
    root = _cifar_folder(tmp_path / "cifar", per_class_train=30, per_class_test=50)
    code, out, err = run_cli(
        "export",
        weights,
        "--format",
        "onnx",
        "--int8",
        "--calibrate",
        root,
        "--heldout-images",
        "0",
        "--json",
    )
    assert code == 0, err
    check = json.loads(out)["int8"]
    assert check["calibration_images"] == 256 and check["heldout_images"] == 500

    model, meta = load_model(weights)
    files = sorted((root / "test").glob("*/*.jpg"))
    classes = sorted(p.name for p in (root / "test").iterdir())
    labels = torch.tensor([classes.index(f.parent.name) for f in files])
    mean, std = torch.tensor(meta.mean).view(3, 1, 1), torch.tensor(meta.std).view(3, 1, 1)
    x = torch.stack(
        [
            (torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) / 255 - mean) / std
            for f in files
        ]
    )
    int8_top1 = _onnx_top1(tmp_path / "resnet20-int8.onnx", x)
    with torch.no_grad():
        fp32_top1 = model(x).argmax(1)
    assert check["top1_fp32"] == pytest.approx((fp32_top1 == labels).float().mean().item())
    assert check["top1_int8"] == pytest.approx((int8_top1 == labels).float().mean().item())
    assert check["agreement"] == pytest.approx((int8_top1 == fp32_top1).float().mean().item())
    assert check["change_points"] >= -0.5 and check["agreement"] >= 0.97


def test_int8_with_a_dynamic_batch_from_python_runs_at_any_batch(digits_run, tmp_path):
    """The Python API: Int8Options with the run's data; a dynamic batch is calibrated and
    verified in whole batches, and the file takes any batch."""
    from resnets.data.digits import load_digits_data
    from resnets.export import Int8Options

    model, meta = load_model(digits_run)
    data = load_digits_data(input_size=8)
    out = tmp_path / "dynamic-int8.onnx"
    options = Int8Options(data, calibration_images=64, heldout_images=100, max_drop=5)
    report = export(model, "onnx", out, meta=meta, dynamic_batch=True, int8=options)
    assert report.int8.heldout_images == 100 and report.int8.calibration_images == 64
    assert json.loads(Path(f"{out}.json").read_text())["int8"]["agreement"] == report.int8.agreement
    session = _ort_session(out)
    assert isinstance(session.get_inputs()[0].shape[0], str)
    for batch in (1, 7):
        (y,) = session.run(None, {"image": torch.randn(batch, 1, 8, 8).numpy()})
        assert y.shape == (batch, 10)


def test_int8_reads_its_images_through_the_weights_recorded_pipeline(tmp_path):
    """Calibration and verification images are what eval and predict feed the network: the
    record's crop_pct, interpolation and normalisation, here against eval_transform by hand."""
    from PIL import Image

    from resnets.data import load_data
    from resnets.export.int8 import batches
    from resnets.preprocess import Preprocess, eval_transform

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.png")
    data = load_data(str(tmp_path / "data"), input_size=8, val_split=2)
    record = Preprocess((8, 8), crop_pct=0.5, interpolation="bicubic", mean=(0.2,) * 3, std=(0.4,) * 3)
    (x, y), *_ = batches(data, record)
    by_hand = torch.stack([eval_transform(record)(Image.open(f).convert("RGB")) for f in data.val.files])
    torch.testing.assert_close(x, by_hand)
    assert y.tolist() == data.val.labels.tolist()
