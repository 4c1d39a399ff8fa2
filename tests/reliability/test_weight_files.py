"""Files from outside (docs/reliability.md, promises 7-9): broken files, pickles that would run
code, and weights that are NaN or do not fit are refused with one line that names the file and
the keys; nothing the file asks for is ever executed."""

import ast
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from resnets import create_model, load_weights
from resnets.errors import WeightsError
from resnets.weights import load_model, save_weights
from resnets.weights.format import check_finite

SRC = Path(__file__).resolve().parents[2] / "src" / "resnets"


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line, as users run it."""
    return subprocess.run(
        [sys.executable, "-m", "resnets", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    model = create_model("resnet20")
    st = save_weights(model, folder / "good.safetensors")
    pth = folder / "good.pth"
    torch.save(model.state_dict(), pth)
    return {".safetensors": st.read_bytes(), ".pth": pth.read_bytes()}


def _broken(kind: str, good: bytes) -> bytes:
    if kind == "zero-byte":
        return b""
    if kind == "truncated":
        return good[: len(good) // 2]
    return os.urandom(4096)  # random bytes


# --- promise 7: zero-byte, truncated and random files; bogus run directories ---------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("kind", ["zero-byte", "truncated", "random-bytes"])
def test_broken_weights_file_is_one_line_error_naming_it(tmp_path, run_cli, good_files, suffix, kind):
    path = tmp_path / f"{kind}{suffix}"
    path.write_bytes(_broken(kind, good_files[suffix]))
    with pytest.raises(WeightsError) as error:
        load_weights(create_model("resnet20"), path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    code, _, err = run_cli("summary", "resnet20", "--weights", str(path))
    assert code == 2 and err.count("\n") == 1 and str(path) in err
    out = tmp_path / "converted.safetensors"
    code, _, err = run_cli("convert", str(path), "--model", "resnet20", "--out", str(out))
    assert code == 2 and str(path) in err and not out.exists()


@pytest.mark.parametrize("layout", ["empty-dir", "zero-byte-model", "random-model"])
def test_bogus_run_directory_is_one_line_error_naming_it(tmp_path, run_cli, layout):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if layout != "empty-dir":
        (run_dir / "config.json").write_text("{}")
        (run_dir / "model.safetensors").write_bytes(b"" if layout == "zero-byte-model" else os.urandom(999))
    with pytest.raises(WeightsError, match=re.escape(str(run_dir))):
        load_model(run_dir)
    code, _, err = run_cli("eval", str(run_dir))
    assert code == 2 and err.count("\n") == 1 and str(run_dir) in err


DAMAGED_RECORDS = {
    "empty": b"",
    "random bytes": bytes(range(256)) * 3,
    "a list": b"[]",
    "config not a table": b'{"config": 5}',
    "a field of the wrong type": b'{"config": {"data": 5}}',
    "an unknown field": b'{"config": {"no_such_field": 1}}',
}


@pytest.mark.parametrize("damage", list(DAMAGED_RECORDS))
def test_a_damaged_run_record_is_one_line_naming_it_for_eval_and_resume(
    tmp_path, run_cli, reference_run, damage
):
    run = shutil.copytree(reference_run, tmp_path / "run")
    (run / "config.json").write_bytes(DAMAGED_RECORDS[damage])
    for command in (["eval", str(run)], ["train", "--resume", str(run)]):
        code, _, err = run_cli(*command)
        assert code == 2 and err.count("\n") == 1 and str(run / "config.json") in err, (command, err)


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda state: state.pop("optimizer"), id="no-optimizer"),
        pytest.param(lambda state: state.update(progress="x"), id="progress-not-a-table"),
        pytest.param(lambda state: state.update(rng_python="!!"), id="bad-rng"),
    ],
)
def test_a_checkpoint_state_of_the_wrong_shape_is_one_line_on_resume(tmp_path, run_cli, reference_run, edit):
    run = shutil.copytree(reference_run, tmp_path / "run")
    latest = run / "checkpoint" / "latest.json"
    state = json.loads(latest.read_text())
    edit(state)
    latest.write_text(json.dumps(state))
    record = (run / "config.json").read_text()
    # The run is complete: extend it, so its checkpoint is read again.
    code, _, err = run_cli("train", "--resume", str(run), "--epochs", "4")
    assert code == 2 and err.count("\n") == 1 and str(latest) in err, err
    assert (run / "config.json").read_text() == record and (run / "model.safetensors").is_file()


def test_broken_files_from_the_real_cli_exit_2_without_traceback(tmp_path, good_files):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(_broken("truncated", good_files[".safetensors"]))
    for args, named in [
        (("summary", "resnet20", "--weights", str(truncated)), truncated),
        (("eval", str(tmp_path)), tmp_path),  # a folder that is no run directory
    ]:
        done = cli(*args)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert str(named) in done.stderr


# --- promise 8: pickles that would run code ------------------------------------------------------


class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _OpensFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize(
    "payload, unsafe",
    [
        pytest.param(_RunsShell, f"{os.system.__module__}.system", id="os.system"),
        pytest.param(_OpensFile, f"{open.__module__}.open", id="open"),
    ],
)
@pytest.mark.parametrize("writer", ["zip", "legacy", "plain-pickle"])
def test_malicious_pickle_is_refused_naming_the_unsafe_global_and_never_runs(
    tmp_path, payload, unsafe, writer
):
    # The payload is live: plain unpickling does run it (so the refusal below is what protects us).
    canary = tmp_path / "canary"
    pickle.loads(pickle.dumps(payload(canary)))
    assert canary.exists()

    marker = tmp_path / "pwned"
    path = tmp_path / "resnet20.pth"
    state = dict(create_model("resnet20").state_dict(), evil=payload(marker))
    if writer == "plain-pickle":
        path.write_bytes(pickle.dumps(state, protocol=4))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=writer == "zip")
    with pytest.raises(WeightsError) as error:
        load_weights(create_model("resnet20"), path)
    message = str(error.value)
    assert not marker.exists()
    assert unsafe in message and str(path) in message and "\n" not in message


def test_a_whole_pickled_module_is_refused_listing_its_classes(tmp_path):
    path = tmp_path / "whole-model.pth"
    torch.save(create_model("resnet20"), path)
    with pytest.raises(WeightsError, match=r"refused: .*resnets\.models\.resnet\.ResNet"):
        load_weights(create_model("resnet20"), path)


def test_malicious_pickle_from_the_real_cli_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "evil": _RunsShell(marker)}, path)
    done = cli("convert", str(path), "--model", "resnet20", "--out", str(tmp_path / "m.safetensors"))
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert f"{os.system.__module__}.system" in done.stderr
    assert not marker.exists() and not (tmp_path / "m.safetensors").exists()


def _torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "load"
        and ast.unparse(node.func.value) in ("torch", "torch.serialization")
    ]


def _code_only(text: str) -> str:
    """The source without strings and comments, tokens joined without spaces (one line per line)."""
    kept = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.NEWLINE, tokenize.NL):
            kept.append("\n")
        elif tok.type not in (tokenize.STRING, tokenize.COMMENT) and tok.string.strip():
            kept.append(tok.string)
    return "".join(kept)


def test_every_torch_load_in_the_source_is_weights_only_without_fallback():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    calls = 0
    for file in files:
        text = file.read_text(encoding="utf-8")
        code = _code_only(text)
        assert "weights_only=False" not in code, file
        assert "=torch.load\n" not in code and "fromtorchimportload" not in code, file  # no aliases
        found = _torch_load_calls(ast.parse(text))
        # every torch.load( in the code is a call the AST check below sees
        assert len(found) == len(re.findall(r"torch(?:\.serialization)?\.load\(", code)), file
        for call in found:
            kw = {k.arg: k.value for k in call.keywords}
            where = f"{file.name}:{call.lineno}"
            assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
                where
            )
        calls += len(found)
    assert calls >= 1  # the checkpoint reader itself


# --- promise 9: NaN weights, wrong shapes or keys -------------------------------------------------


def test_nan_and_inf_weights_are_rejected_listing_the_keys(tmp_path, run_cli):
    state = {k: v.clone() for k, v in create_model("resnet20").state_dict().items()}
    state["layer2.1.conv1.weight"][0, 0, 0, 0] = float("nan")
    state["fc.bias"][3] = float("inf")
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as error:
        load_weights(create_model("resnet20"), path)
    assert "fc.bias" in str(error.value) and "layer2.1.conv1.weight" in str(error.value)
    assert "layer1.0.conv1.weight" not in str(error.value)
    code, _, err = run_cli("summary", "resnet20", "--weights", str(path))
    assert code == 2 and "layer2.1.conv1.weight" in err and err.count("\n") == 1


def test_check_finite_returns_the_bad_tensors_or_raises_naming_the_file():
    tensors = {f"w{i}": torch.full((2,), float("nan") if i % 2 else float("-inf")) for i in range(10)}
    tensors |= {"fine": torch.ones(3), "counter": torch.tensor([7])}
    assert check_finite(tensors) == [f"w{i}" for i in range(10)]
    assert check_finite({"fine": torch.ones(3), "half": torch.zeros(2, dtype=torch.float16)}) == []
    expected = "m.safetensors: non-finite values (NaN or inf) in w0, w1, w2, w3, w4, w5, w6, w7 and 2 more"
    with pytest.raises(WeightsError) as error:
        check_finite(tensors, "m.safetensors")
    assert str(error.value) == expected


def test_safetensors_with_wrong_shapes_and_keys_lists_them(tmp_path):
    state = dict(create_model("resnet20", num_classes=100).state_dict())
    state["extra.weight"] = torch.zeros(3)
    del state["layer1.0.bn1.running_var"]
    path = tmp_path / "other.safetensors"
    save_file(state, str(path))
    with pytest.raises(WeightsError) as error:
        load_weights(create_model("resnet20"), path)
    message = str(error.value)
    assert "missing: layer1.0.bn1.running_var" in message
    assert "unexpected: extra.weight" in message
    assert "fc.weight (file (100, 64), model (10, 64))" in message
