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
from resnets.train.guards import TrainingInterrupted, last_checkpoint_text, resume_command
from resnets.train.loop import train_here
from resnets.train.memory import with_batch_that_fits
from resnets.train.recipes import resolve_recipe
from resnets.train.resume import LENGTH, resume_config
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
    started with, or with `config` when given: that may change how and where the run executes
    and its length (resume.py; a new length re-lays the schedule from the current step), not what
    it computes. A finished run resumed without a new length returns its summary with
    "already_complete" (a sentence saying so). `nproc_per_node=N` trains data-parallel in
    N processes on this machine (one per GPU, or CPU processes with gloo) under torchrun,
    restarted up to `max_restarts` times from the last checkpoint when a worker dies; under your
    own torchrun, leave it unset: every worker calls `train`. `console` shows a progress bar on
    stderr and a table row per epoch on `table_stream` (stdout by default; a worker started here
    writes to stderr when `table_stream` is sys.stderr). `stop_after_epoch` ends after that epoch
    with a checkpoint, as an interruption would. `command` is recorded in config.json (default:
    sys.argv).

    Raises ResNetsError (one line) for settings that cannot work, a run directory that already
    holds a run, data or weights that cannot be read, a batch that does not fit in memory (naming
    the one that does), a non-finite loss (NonFiniteLossError), an unexpected error inside the
    loop (StepFailed, naming the step, the last checkpoint and where the traceback was kept), or a
    torchrun group that failed; TrainingInterrupted (a KeyboardInterrupt) for Ctrl-C, naming the
    last checkpoint and the command that continues the run.
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
        config, changed = resume_config(run_dir, saved, config if config is not None else saved)
        if not set(changed) & set(LENGTH) and (run_dir / "summary.json").is_file():
            return already_complete(run_dir, config)
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


def already_complete(run_dir: Path, config: TrainConfig) -> dict[str, Any]:
    """The summary of a finished run, with "already_complete": the sentence that says so."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResNetsError(f"{run_dir / 'summary.json'}: unreadable ({type(exc).__name__})") from None
    unit = "--iterations" if config.iterations is not None else "--epochs"
    done = summary.get("steps") if config.iterations is not None else summary.get("epochs")
    summary["already_complete"] = (
        f"{run_dir} is already complete ({summary.get('epochs')} epochs, {summary.get('steps')} steps); "
        f"to train it further, resume with {unit} beyond {done}"
    )
    return summary


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
        args = ["--config", str(record)] + (["--resume"] if resume else [])
        args += ["--console"] if console else []
        args += ["--table-to-stderr"] if table_to_stderr else []
        args += ["--stop-after-epoch", str(stop_after_epoch)] if stop_after_epoch is not None else []
        try:
            code = subprocess.run(torchrun_command([*args, str(run_dir)], nproc, restarts)).returncode
        except KeyboardInterrupt:  # torchrun got the Ctrl-C too and stops its workers
            raise TrainingInterrupted(
                f"{last_checkpoint_text(run_dir)}; continue with: {resume_command(run_dir, nproc)}"
            ) from None
    if code != 0:
        raise ResNetsError(
            f"distributed training failed (torchrun exit code {code}; {restarts} restart(s) allowed); "
            f"see the worker errors above; {last_checkpoint_text(run_dir)}; "
            f"continue with: {resume_command(run_dir, nproc)}"
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
