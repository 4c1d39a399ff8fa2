"""`resnets.train(config)`: what `resnets train` does, callable from Python.

    resnets.train(config)                                  one process, here
    resnets.train(config, nproc_per_node=4)                torchrun starts 4 workers (worker.py)
    resnets.train(run_dir=..., resume=True)                continue a run with its own config
    torchrun ... -m resnets train ...                      every worker calls train() itself

In a process (alone or as a torchrun worker) `train` joins the process group, agrees with the
other ranks on the run directory, notices a restart by torchrun's elastic agent (and then
resumes from the last checkpoint), guards against running out of memory, and trains
(loop.train_here). With `nproc_per_node` it starts torchrun on this machine instead and returns
the finished run's summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from resnets.errors import ResNetsError
from resnets.train import distributed
from resnets.train.checkpoint import LATEST
from resnets.train.config import TrainConfig
from resnets.train.loop import train_here
from resnets.train.memory import with_batch_that_fits
from resnets.train.recipes import resolve_recipe
from resnets.train.run_dir import check_fresh_run_dir, default_run_dir, read_run_config

WORKER = ["-m", "resnets.train.worker"]  # what torchrun starts: `python -m resnets.train.worker ...`


def train(
    config: TrainConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    nproc_per_node: int | None = None,
    max_restarts: int = 0,
    console: bool = False,
    table_stream: TextIO | None = None,
    stop_after_epoch: int | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """Train `config` (default: the `default` recipe, ResNet-20 on the bundled digits) into
    `run_dir` (default: `config.out`, else runs/<model>-<data>-<UTC time>); return the summary
    that summary.json holds (keys as in docs/training.md; accuracies in 0..1, times in seconds).

    `resume=True` continues the run in `run_dir` from its last checkpoint with the config it was
    started with (a `config` given too must be that one). `nproc_per_node=N` trains data-parallel in
    N processes on this machine (one per GPU, or CPU processes with gloo) under torchrun,
    restarted up to `max_restarts` times from the last checkpoint when a worker dies; under your
    own torchrun, leave it unset: every worker calls `train`. `console` shows a progress bar on
    stderr and a table row per epoch on `table_stream` (stdout by default; a worker started here
    writes to stderr when `table_stream` is sys.stderr). `stop_after_epoch` ends after that epoch
    with a checkpoint, as an interruption would. `command` is recorded in config.json (default:
    sys.argv).

    Raises ResNetsError (one line) for settings that cannot work, a run directory that already
    holds a run, data or weights that cannot be read, a batch that does not fit in memory (naming
    the one that does), a non-finite loss (NonFiniteLossError), or a torchrun group that failed.
    """
    if max_restarts and nproc_per_node is None:
        raise ResNetsError(
            "--max-restarts needs --nproc-per-node (under your own torchrun, pass --max-restarts to torchrun)"
        )
    if resume:
        if run_dir is None:
            raise ResNetsError("resume needs the run directory to continue")
        run_dir = Path(run_dir)
        saved = read_run_config(run_dir)
        # Whether to accept data that changed since is a decision of this resume, not of the run.
        accept = config.accept_changed_data if config is not None else False
        mine = dict(out=None, accept_changed_data=False)
        if config is not None and config.replace(**mine) != saved.replace(**mine):
            changed = [k for k, v in config.to_dict().items() if k not in mine and getattr(saved, k) != v]
            raise ResNetsError(
                f"--resume continues {run_dir} with its own config; drop "
                + ", ".join("--" + k.replace("_", "-") for k in changed)
            )
        config = saved.replace(accept_changed_data=accept)
    config = (config if config is not None else resolve_recipe("default")).validate()
    if nproc_per_node is not None:
        return launch(
            config,
            Path(run_dir) if run_dir is not None else None,
            resume=resume,
            nproc=nproc_per_node,
            restarts=max_restarts,
            console=console,
            table_to_stderr=table_stream is sys.stderr,
            stop_after_epoch=stop_after_epoch,
            command=command if command is not None else list(sys.argv),
        )
    with distributed.process_group(config.device) as device:
        # A worker restarted by torchrun's elastic agent picks up the run's last checkpoint.
        restarted = distributed.restart_count() > 0
        if not resume:
            run_dir = Path(run_dir) if run_dir is not None else distributed.shared_run_dir(config, device)
            if not restarted:
                check_fresh_run_dir(run_dir)
            distributed.barrier()  # every rank has looked before rank 0 writes config.json
        assert run_dir is not None
        where = Path(run_dir)
        resume = resume or (restarted and (where / "checkpoint" / LATEST).is_file())

        def attempt(fitted: TrainConfig) -> dict[str, Any]:
            return train_here(
                fitted,
                where,
                device,
                resume=resume,
                console=console,
                table_stream=table_stream,
                stop_after_epoch=stop_after_epoch,
                command=command,
            )

        return with_batch_that_fits(attempt, config, resume=resume)


def is_main_process() -> bool:
    """Whether this process is rank 0 (or alone): the one that prints a run's summary."""
    return distributed.env_rank() == 0


# --- starting torchrun ---------------------------------------------------------------------------


def launch(
    config: TrainConfig,
    run_dir: Path | None,
    *,
    resume: bool,
    nproc: int,
    restarts: int,
    console: bool,
    table_to_stderr: bool,
    stop_after_epoch: int | None,
    command: list[str],
) -> dict[str, Any]:
    """Train in `nproc` worker processes under torchrun on this machine; the finished run's summary.

    The run directory is chosen (and checked to be fresh) here, so every worker and every
    restart of the group finds the same one; the config travels as a JSON file for the workers'
    lifetime.
    """
    if distributed.launched_by_torchrun():
        raise ResNetsError("--nproc-per-node starts torchrun; under torchrun already, drop it")
    if nproc < 1 or restarts < 0:
        raise ResNetsError("--nproc-per-node must be >= 1 and --max-restarts >= 0")
    if not resume:
        run_dir = (
            run_dir if run_dir is not None else Path(config.out) if config.out else default_run_dir(config)
        )
        check_fresh_run_dir(run_dir)
    assert run_dir is not None
    with tempfile.TemporaryDirectory(prefix="resnets-launch-") as folder:
        record = Path(folder) / "config.json"
        record.write_text(json.dumps({"config": config.to_dict(), "command": command}), encoding="utf-8")
        args = ["--resume"] if resume else ["--config", str(record)]
        args += ["--console"] if console else []
        args += ["--table-to-stderr"] if table_to_stderr else []
        args += ["--stop-after-epoch", str(stop_after_epoch)] if stop_after_epoch is not None else []
        code = subprocess.run(torchrun_command([*args, str(run_dir)], nproc, restarts)).returncode
    if code != 0:
        raise ResNetsError(
            f"distributed training failed (torchrun exit code {code}; {restarts} restart(s) allowed); "
            f"see the worker errors above. {run_dir} keeps the last checkpoint, if one was written: "
            f"continue with 'resnets train --resume {run_dir} --nproc-per-node {nproc}'"
        )
    if stop_after_epoch is not None and not (run_dir / "summary.json").is_file():
        latest = json.loads((run_dir / "checkpoint" / LATEST).read_text(encoding="utf-8"))
        return {"run_dir": str(run_dir), "epochs": latest["progress"]["epoch"], "stopped": True}
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def torchrun_command(worker_args: Sequence[str], nproc: int, restarts: int) -> list[str]:
    """`python -m torch.distributed.run --standalone ... -m resnets.train.worker ARGS` (one node)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        f"--max-restarts={restarts}",
        *worker_entry(),
        *worker_args,
    ]


def worker_entry() -> list[str]:
    """How torchrun starts a worker (the tests start their own, with a fault injected)."""
    return list(WORKER)
