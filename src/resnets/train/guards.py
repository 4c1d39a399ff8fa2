"""What keeps a long run from silently going wrong: non-finite losses, and the search for a batch
size that fits in memory.

`LossGuard` watches every micro-batch's loss inside the training step. By default it records the
first non-finite one on the device, in place and without a host sync (so it also works inside a
captured CUDA graph), and `check()` (called with the progress display, before every checkpoint
and at the end of each epoch) stops the run with the step and the last good checkpoint in the
message. Under `--skip-nonfinite` it must decide per step, so it syncs and the step drops that
update.

`search_batch_size` is the search behind the out-of-memory message and `--auto-batch-size`
(memory.py tries the batch sizes).

`failures_named` turns anything else that goes wrong inside the loop into one line naming the
step (or evaluation, or save) and the last good checkpoint, with the traceback kept in the run
directory, and Ctrl-C into `TrainingInterrupted`, which names the checkpoint and the exact
command that continues the run.
"""

from __future__ import annotations

import gc
import shlex
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from resnets.atomic import write_text
from resnets.errors import ResNetsError
from resnets.text import first_line
from resnets.train import ranks
from resnets.train.checkpoint import describe_checkpoint


class NonFiniteLossError(ResNetsError):
    """The loss became NaN or infinite; the run stopped before saving anything from that point."""


class LossGuard:
    """The non-finite-loss policy of a run: record and stop (default) or skip (`skip`).

    `checkpoint_dir` is where the run keeps its checkpoints, named in the stop message (None: a
    step outside a run, as in `resnets bench`).
    """

    def __init__(self, skip: bool = False, checkpoint_dir: Path | None = None) -> None:
        self.skip = skip
        self.checkpoint_dir = checkpoint_dir
        self.first_step: torch.Tensor | None = None  # 0 until a non-finite loss is seen
        self.first_value: torch.Tensor | None = None

    def admit(self, loss: torch.Tensor, step: int | torch.Tensor, all_ranks: bool = False) -> bool:
        """Whether the update of optimizer step `step` (1-based) may use this `loss`.

        Recording (the default): always True; a non-finite loss is remembered with its step in
        device tensors updated in place (`step` may be a device tensor, as in a CUDA graph).
        Skipping: False for a non-finite loss; with `all_ranks`, every process answers False when
        any one saw one (their gradients are averaged, so they must agree on which steps happen).
        """
        loss = loss.detach()
        finite = torch.isfinite(loss)
        if self.skip:
            if all_ranks:
                finite = ranks.reduce_sums((~finite).double().reshape(1))[0] == 0
            return bool(finite)
        if self.first_step is None or self.first_value is None:
            self.first_step = torch.zeros((), dtype=torch.float64, device=loss.device)
            self.first_value = torch.zeros((), dtype=torch.float32, device=loss.device)
        new = ~finite & (self.first_step == 0)
        self.first_step.copy_(torch.where(new, step, self.first_step))
        self.first_value.copy_(torch.where(new, loss.float(), self.first_value))
        return True

    def check(self) -> None:
        """Raise NonFiniteLossError if any step so far had a non-finite loss (one host sync)."""
        if self.first_step is None or (step := int(self.first_step.item())) == 0:
            return
        value = float(self.first_value.item())  # type: ignore[union-attr]
        last = describe_checkpoint(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        raise NonFiniteLossError(
            f"loss became {value} at step {step}; stopped without saving. Last good checkpoint: "
            + (last if last else "none yet")
            + ". Lower --lr, set --grad-clip, or pass --skip-nonfinite to skip such steps"
        )


# --- failures and interruptions inside the loop ---------------------------------------------------


class StepFailed(ResNetsError):
    """An unexpected exception inside the training loop, reported as one line (the traceback is
    kept in the run directory); the run resumes from its last good checkpoint."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message names the last checkpoint and the resume command."""


class Activity:
    """What the loop is doing, for the message if it fails: "step 45" while training (kept as a
    step number, read when needed), else a phrase ("evaluation after epoch 3")."""

    def __init__(self) -> None:
        self.phrase: str | None = None
        self.step = 0

    def training(self, step: int) -> None:
        self.phrase, self.step = None, step

    def doing(self, phrase: str) -> None:
        self.phrase = phrase

    def __str__(self) -> str:
        return self.phrase or f"step {self.step}"


def resume_command(run_dir: Path, world_size: int = 1) -> str:
    """The command that continues the run in `run_dir` (on `world_size` processes)."""
    more = f" --nproc-per-node {world_size}" if world_size > 1 else ""
    return f"resnets train --resume {shlex.quote(str(run_dir))}{more}"


def last_checkpoint_text(run_dir: Path) -> str:
    """'last checkpoint: <file> (epoch E, step S)', or that there is none yet."""
    last = describe_checkpoint(run_dir / "checkpoint")
    return f"last checkpoint: {last}" if last else "no checkpoint yet (a resume starts the run over)"


@contextmanager
def failures_named(run_dir: Path, activity: Activity, world_size: int = 1) -> Iterator[None]:
    """Inside: Ctrl-C becomes TrainingInterrupted and any unexpected exception StepFailed, each
    one line naming `activity`, the last good checkpoint and the resume command. Our own one-line
    errors (ResNetsError) and running out of memory (memory.py's business) pass through as they are.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"stopped during {activity}; {last_checkpoint_text(run_dir)}; "
            f"continue with: {resume_command(run_dir, world_size)}"
        ) from None
    except (ResNetsError, torch.OutOfMemoryError):
        raise
    except Exception as exc:
        kept = keep_traceback(run_dir, exc)
        raise StepFailed(
            f"{activity} failed: {type(exc).__name__}: {first_line(exc, 300)}; "
            + (f"traceback in {kept}; " if kept else "")
            + f"{last_checkpoint_text(run_dir)}; after a fix, continue with: {resume_command(run_dir, world_size)}"
        ) from exc


def keep_traceback(run_dir: Path, exc: BaseException) -> Path | None:
    """Write the full traceback to RUN_DIR/error.txt (error-rankR.txt on other ranks); None when
    it cannot be written (the one-line message still goes out)."""
    name = "error.txt" if ranks.is_main() else f"error-rank{ranks.rank()}.txt"
    try:
        return write_text(run_dir / name, "".join(traceback.format_exception(exc)))
    except OSError:
        return None


# --- out of memory ---------------------------------------------------------------------------


def search_batch_size(fits: Callable[[int], bool], start: int) -> int:
    """The largest b <= start with fits(b), or 0: halve until one fits, then bisect upwards."""
    if fits(start):
        return start
    high, low = start, start // 2
    while low >= 1 and not fits(low):
        high, low = low, low // 2
    if low == 0:
        return 0
    while high - low > 1:
        mid = (low + high) // 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
