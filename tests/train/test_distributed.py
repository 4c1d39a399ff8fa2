"""Data-parallel training under torchrun (CPU, gloo, real processes): accuracy, exact sharded
evaluation, resume across world sizes, and the elastic agent's restarts after a worker dies.

Four real runs are shared by the tests (each torchrun start costs seconds on two cores): a
one-process baseline (in this process), a plain two-process run (through `resnets train
--nproc-per-node`), the same run under a torchrun of its own with rank 1 killed once, and a
two-process run (through `--nproc-per-node` again) whose rank 1 dies on every attempt. The kills
are injected by tests/fault_child.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import resnets
from resnets.data.loaders import TensorLoader, shard
from resnets.errors import ResNetsError
from resnets.evaluate import evaluate_run
from resnets.train import distributed, launch, resolve_recipe, train
from resnets.train.schedule import Schedule

# A ResNet-8 (one basic block per stage) on the 8x8 digits: ~90% held-out top-1 in 4 epochs.
# 301 held-out images: an odd count, so a padded or truncated 2-way shard would miscount.
TINY = dict(
    model="basic:1-1-1:16-32-64",
    input_size=8,
    val_split=301,
    epochs=4,
    warmup=0,
    batch_size=64,  # global: 23 steps per epoch on 1496 training images, on any world size
)
STEPS = 4 * (1496 // 64)
TINY_ARGS = [
    "--model", "basic:1-1-1:16-32-64", "--input-size", "8", "--val-split", "301",
    "--epochs", "4", "--warmup", "0", "--batch-size", "64", "--checkpoint-every-steps", "10",
]  # fmt: skip
RUN_FILES = {
    "config.json",
    "split.json",
    "metrics.csv",
    "curves.png",
    "model.safetensors",
    "summary.json",
    "checkpoint",
}
FAULT_CHILD = str(Path(__file__).resolve().parents[1] / "fault_child.py")  # kills a rank on purpose


def env_with_src(**extra):
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def torchrun(*args, **env):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*command, *args], env=env_with_src(**env), capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("one") / "run"
    threads = torch.get_num_threads()
    try:  # one thread, as torchrun gives each worker: far faster on a busy machine
        return train(resolve_recipe("default", **TINY, threads=1), run_dir)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def killed_once(tmp_path_factory):
    """Two processes, --max-restarts 1; rank 1 is SIGKILLed after step 55 of the first attempt."""
    run_dir = tmp_path_factory.mktemp("once") / "run"
    proc = torchrun(
        "--max-restarts", "1", FAULT_CHILD, "--kill-at-step", "55", "--rank", "1", "--",
        "train", *TINY_ARGS, "--out", str(run_dir),
    )  # fmt: skip
    return proc, run_dir


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Two processes, nothing killed: the plain data-parallel run, through `resnets train
    --nproc-per-node 2` (the launcher starts torchrun and prints the finished run's summary)."""
    run_dir = tmp_path_factory.mktemp("two") / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnets",
            "train",
            *TINY_ARGS,
            "--out",
            str(run_dir),
            "--nproc-per-node",
            "2",
        ],
        env=env_with_src(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One table (rank 0's worker) and one summary (the launcher's), not one per process.
    assert proc.stdout.count("  epoch  ") == 1 and proc.stdout.count("run directory:") == 1, proc.stdout
    assert f"run directory: {run_dir}" in proc.stdout
    return run_dir


@pytest.fixture(scope="module")
def killed_every_attempt(tmp_path_factory):
    """`resnets train --nproc-per-node 2 --max-restarts 1` with accumulation; rank 1 dies after
    step 35 on both attempts, so the restarts run out."""
    run_dir = tmp_path_factory.mktemp("every") / "run"
    faults = ["--kill-at-step", "35", "--rank", "1", "--every-attempt"]
    args = ["train", *TINY_ARGS, "--accum-steps", "2", "--out", str(run_dir)]
    proc = subprocess.run(
        [sys.executable, FAULT_CHILD, *faults, "--", *args, "--nproc-per-node", "2", "--max-restarts", "1"],
        env=env_with_src(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, run_dir


def read(run_dir, name):
    return json.loads((run_dir / name).read_text())


def test_killing_rank_1_once_ends_with_exit_0_and_a_complete_run_directory(killed_once):
    proc, run_dir = killed_once
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exitcode: -9" in proc.stderr or "exitcode: -9" in proc.stdout or "-9" in proc.stderr
    # Rank 0 saw its peer vanish mid-step: that failure's traceback stays with the run.
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES | {"error.txt"}
    assert "Traceback" in (run_dir / "error.txt").read_text()
    summary = read(run_dir, "summary.json")
    assert (summary["epochs"], summary["steps"], summary["world_size"]) == (4, STEPS, 2)
    assert read(run_dir, "config.json")["world_size"] == 2
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [[str(e), str(e * STEPS // 4)] for e in range(1, 5)]
    assert read(run_dir / "checkpoint", "latest.json")["progress"]["step"] == STEPS


def test_two_processes_reach_the_accuracy_band_of_one_process_with_the_same_global_batch(
    one_process, two_processes
):
    two = read(two_processes, "summary.json")
    assert one_process["steps"] == two["steps"] == STEPS
    assert one_process["val_top1"] > 0.8 and two["val_top1"] > 0.8
    assert abs(one_process["val_top1"] - two["val_top1"]) < 0.08


def test_a_restarted_group_ends_with_the_weights_of_the_uninterrupted_run(killed_once, two_processes):
    from safetensors.torch import load_file

    proc, run_dir = killed_once
    assert proc.returncode == 0, proc.stderr[-3000:]
    restarted = load_file(run_dir / "model.safetensors")
    plain = load_file(two_processes / "model.safetensors")
    assert restarted.keys() == plain.keys()
    for key in plain:
        assert torch.equal(restarted[key], plain[key]), key


def test_distributed_evaluation_counts_every_validation_image_exactly_once(killed_once):
    proc, run_dir = killed_once
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read(run_dir, "summary.json")
    assert summary["val_images"] == 301 == read(run_dir, "config.json")["data"]["val_images"]
    # The oracle: the saved weights evaluated in one process, on the whole split.
    alone = evaluate_run(run_dir, device="cpu", out=run_dir.parent / "eval")
    assert alone["count"] == 301
    assert alone["top1"] == summary["val_top1"]


def test_killing_rank_1_on_every_attempt_exhausts_max_restarts_with_a_clear_message(killed_every_attempt):
    proc, run_dir = killed_every_attempt
    assert proc.returncode != 0
    assert "resnets train: error: distributed training failed" in proc.stderr
    assert f"resnets train --resume {run_dir}" in proc.stderr
    assert not (run_dir / "summary.json").exists()
    # Both attempts got as far as the mid-epoch checkpoint at step 30 (every 10 steps).
    assert read(run_dir / "checkpoint", "latest.json")["progress"]["step"] == 30


def test_a_two_process_run_resumes_as_a_one_process_run_in_mid_epoch(killed_every_attempt, run_cli):
    _, run_dir = killed_every_attempt
    saved = read(run_dir / "checkpoint", "latest.json")["progress"]
    assert (saved["epoch"], saved["epoch_step"]) == (1, 30 - 23)  # 7 steps into the second epoch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_cli("train", "--resume", run_dir).code == 0
    finally:
        torch.set_num_threads(threads)
    summary = read(run_dir, "summary.json")
    assert (summary["steps"], summary["world_size"], summary["accum_steps"]) == (STEPS, 1, 2)
    assert summary["val_images"] == 301 and summary["val_top1"] > 0.8
    assert read(run_dir, "config.json")["world_size"] == 2  # the run was started on two
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [23, 46, 69, 92]


# --- the pieces, in one process -----------------------------------------------------------------


def tiny_loader(**kw):
    n = 50
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    from resnets.data.datasets import Split

    split = Split(labels=torch.arange(n), images=images)
    args = dict(batch_size=8, train=True, seed=3, augment="pad-crop", pad=1)
    return TensorLoader(split, (0.0,), (1 / 255,), **{**args, **kw})


def test_evaluation_shards_cover_every_item_once_for_any_world_size():
    order = torch.arange(301)
    for world in range(1, 6):
        parts = torch.cat([shard(order, r, world, even=False) for r in range(world)])
        assert sorted(parts.tolist()) == list(range(301))


def test_global_batches_and_their_augmentation_do_not_depend_on_the_world_size():
    """Step k of one process sees the same images, cropped the same way, as the union of step k
    of two ranks (each with half the batch): data order and augmentation are per position."""
    one = list(tiny_loader(batch_size=8).epoch(2))
    ranks = [list(tiny_loader(batch_size=4, rank=r, world_size=2).epoch(2)) for r in (0, 1)]
    for k, (x, y) in enumerate(one[:6]):
        ys = torch.cat([ranks[0][k][1], ranks[1][k][1]])
        xs = torch.cat([ranks[0][k][0], ranks[1][k][0]])
        order = ys.argsort()
        assert torch.equal(y.sort().values, ys[order])
        assert torch.equal(x[y.argsort()], xs[order])


def test_a_resumed_epoch_skips_exactly_the_batches_already_done():
    whole = list(tiny_loader().epoch(1))
    rest = list(tiny_loader().epoch(1, skip=2))
    assert len(rest) == len(whole) - 2
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole[2:], rest))


def test_linear_scaling_rule_multiplies_lr_by_global_batch_over_base():
    config = resolve_recipe("default", lr=0.1, batch_size=1024, lr_base_batch=256, warmup=0)
    assert Schedule.from_config(config, 10)(0) == pytest.approx(0.4)
    assert Schedule.from_config(config.replace(lr_base_batch=None), 10)(0) == pytest.approx(0.1)


def test_launcher_starts_torchrun_with_the_resolved_config_in_a_file_and_the_run_directory(
    tmp_path, monkeypatch
):
    """`train(config, nproc_per_node=N)` hands its workers the config it was given (every field,
    none re-derived from a recipe) and the run directory it chose; the oracle is the config."""
    seen = {}

    def fake_run(command):
        seen["command"] = command
        config_file = command[command.index("--config") + 1]
        seen["record"] = json.loads(Path(config_file).read_text())
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(launch.subprocess, "run", fake_run)
    config = resolve_recipe("paper-cifar", model="resnet110", ema_decay=0.99)
    with pytest.raises(ResNetsError, match="torchrun exit code 1; 3 restart"):
        train(config, tmp_path / "run", nproc_per_node=4, max_restarts=3, command=["resnets", "train"])
    command = seen["command"]
    assert command[1:6] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=4",
        "--max-restarts=3",
    ]
    assert command[6:8] == ["-m", "resnets.train.worker"] and command[-1] == str(tmp_path / "run")
    assert seen["record"] == {"config": config.to_dict(), "command": ["resnets", "train"]}


def test_batch_size_must_split_evenly_over_processes_and_accumulation(tmp_path, run_cli):
    result = run_cli("train", *TINY_ARGS, "--batch-size", "63", "--accum-steps", "2", "--out", tmp_path / "r")
    assert result.code == 2
    assert "global batch" in result.err


def test_each_rank_draws_its_own_random_stream_and_a_resume_redraws_the_same(monkeypatch):
    from resnets.train import ranks

    def draws(rank, seed=0, step=40):
        monkeypatch.setattr(ranks, "rank", lambda: rank)
        distributed.seed_rank(seed, step)
        return torch.rand(4)  # what MixUp, CutMix and drop path would draw

    assert not torch.equal(draws(0), draws(1))  # ranks mix different pairs, drop different paths
    assert torch.equal(draws(1), draws(1))  # a resumed rank redraws its stream from (seed, step)
    assert not torch.equal(draws(1), draws(1, step=41)) and not torch.equal(draws(1), draws(1, seed=1))


def test_only_rank_0_writes_a_rank_other_than_0_trains_and_leaves_no_file(tmp_path, monkeypatch):
    from resnets.train import ranks

    config = resolve_recipe(
        "default", model="basic:1-1-1:4-8-16", data="synthetic", synthetic_count=96,
        synthetic_classes=4, input_size=8, batch_size=16, epochs=2, checkpoint_every_steps=2,
    )  # fmt: skip
    monkeypatch.setattr(ranks, "is_main", lambda: False)  # as rank 1 sees itself
    summary = train(config, tmp_path / "other")
    assert summary["epochs"] == 2 and not (tmp_path / "other").exists()
    monkeypatch.setattr(ranks, "is_main", lambda: True)
    train(config, tmp_path / "main")
    assert {p.name for p in (tmp_path / "main").iterdir()} == RUN_FILES
