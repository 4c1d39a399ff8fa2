"""`resnets.train(config)` does what `resnets train` does: the same run directory from the same
config, the same refusals; the command line only parses flags and prints."""

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

import resnets
from resnets.cli import main
from resnets.errors import ResNetsError
from resnets.train import resolve_recipe
from resnets.train.launch import train

TINY = dict(
    model="basic:1-1-1:4-8-16",
    data="synthetic",
    synthetic_count=96,
    synthetic_classes=4,
    input_size=8,
    batch_size=16,
    epochs=2,
    deterministic=True,
    threads=1,
    ema_decay=0.9,
    mixup_alpha=0.4,
)
TINY_ARGS = [
    "--model", "basic:1-1-1:4-8-16", "--data", "synthetic", "--synthetic-count", "96",
    "--synthetic-classes", "4", "--input-size", "8", "--batch-size", "16", "--epochs", "2",
    "--deterministic", "--threads", "1", "--ema-decay", "0.9", "--mixup-alpha", "0.4",
]  # fmt: skip
TIMING = {"seconds", "images_per_second", "train_seconds", "step_seconds", "run_dir", "started", "command"}


@pytest.fixture(autouse=True)
def restore_torch_settings():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(False)


def without(obj, keys=TIMING):
    if isinstance(obj, dict):
        return {k: without(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [without(v, keys) for v in obj]
    return obj


def test_the_python_call_and_the_command_make_the_same_run(tmp_path, capsys):
    assert main(["train", *TINY_ARGS, "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    summary = resnets.train(resolve_recipe("default", **TINY), tmp_path / "api")
    cli, api = tmp_path / "cli", tmp_path / "api"

    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    assert files(cli) == files(api)
    assert without(summary) == without(json.loads((cli / "summary.json").read_text()))
    assert f"run directory: {cli}" in printed  # the command prints what the call returns
    records = [json.loads((d / "config.json").read_text()) for d in (cli, api)]
    assert {**records[0]["config"], "out": None} == records[1]["config"]
    assert without(records[0], TIMING | {"config"}) == without(records[1], TIMING | {"config"})
    rows = [[without(r) for r in csv.DictReader((d / "metrics.csv").open())] for d in (cli, api)]
    assert rows[0] == rows[1]
    a, b = load_file(cli / "model.safetensors"), load_file(api / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resnets_train_is_the_library_function_and_the_cli_calls_it(tmp_path, monkeypatch):
    from resnets.cli import train as cli_train

    assert resnets.train is train and cli_train.train is train
    calls = []
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: calls.append((a, k)) or {"run_dir": "x"})
    monkeypatch.setattr(cli_train, "format_train_summary", lambda s: "")
    assert main(["train", "--epochs", "3", "--nproc-per-node", "2", "--max-restarts", "1"]) == 0
    (((config, run_dir), kwargs),) = calls
    assert config.epochs == 3 and run_dir is None
    assert (kwargs["nproc_per_node"], kwargs["max_restarts"], kwargs["resume"]) == (2, 1, False)


def test_resume_continues_with_the_runs_own_config_and_refuses_a_change_of_what_it_computes(tmp_path):
    config = resolve_recipe("default", **TINY)
    train(config, tmp_path / "run", stop_after_epoch=1)
    with pytest.raises(ResNetsError, match="as it was started: --lr would change what the run computes"):
        train(config.replace(lr=0.5), tmp_path / "run", resume=True)
    with pytest.raises(ResNetsError, match="needs the run directory"):
        train(config, resume=True)
    summary = train(run_dir=tmp_path / "run", resume=True)
    assert (summary["epochs"], summary["steps"]) == (2, 2 * 4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_restarts=1), "--max-restarts needs --nproc-per-node"),
        (dict(nproc_per_node=0), "--nproc-per-node must be >= 1"),
    ],
)
def test_launch_options_that_cannot_work_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(ResNetsError, match=message):
        train(resolve_recipe("default", **TINY), tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_starting_torchrun_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ResNetsError, match="under torchrun already"):
        train(resolve_recipe("default", **TINY), tmp_path / "run", nproc_per_node=2)


def test_a_fresh_run_never_overwrites_an_old_one(tmp_path):
    config = resolve_recipe("default", **TINY)
    train(config, tmp_path / "run", stop_after_epoch=1)
    for kwargs in (dict(), dict(nproc_per_node=2)):
        with pytest.raises(ResNetsError, match="already holds a run; use --resume"):
            train(config, tmp_path / "run", **kwargs)


def test_a_worker_reports_a_user_error_in_one_line_and_exit_code_2(tmp_path, capsys):
    """What torchrun starts for --nproc-per-node: the config file in, one line out on failure."""
    from resnets.train import worker

    record = tmp_path / "launch.json"
    config = resolve_recipe("default", **{**TINY, "data": str(tmp_path / "no-such-folder")})
    record.write_text(json.dumps({"config": config.to_dict(), "command": ["resnets", "train"]}))
    assert worker.main([str(tmp_path / "run"), "--config", str(record)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnets train: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
