"""Test-only: `resnets ARGS` in a real process with a fault injected, for the tests whose process
has to die (kill -9 during training or inside a checkpoint write, a rank lost from a torchrun
group). The faults are patched into the library here, before it runs; the product has no hook.

    python tests/fault_child.py [--kill-at-step K [--rank R] [--every-attempt]] [--kill-in-save] -- ARGS

--kill-at-step K   SIGKILL right after optimizer step K (and its mid-epoch checkpoint, if one is
                   due), as the OOM killer or a lost machine would; with --rank R only on global
                   rank R, and only in a torchrun group's first attempt unless --every-attempt
--kill-in-save     SIGKILL after a checkpoint's tensor file is on disk, before latest.json commits it
ARGS               `resnets` arguments (train ...). Workers that `train --nproc-per-node N` starts
                   run this script too, with the same faults.

Run it as a torchrun script for a group you start yourself:
    torchrun --nproc-per-node 2 tests/fault_child.py --kill-at-step 55 --rank 1 -- train ...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from resnets.cli import main as resnets_main
from resnets.train import checkpoint, launch, worker
from resnets.train.step import TrainStep


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(faults: argparse.Namespace, fault_argv: list[str]) -> None:
    if faults.kill_at_step is not None:
        real_call = TrainStep.__call__
        rank = int(os.environ.get("RANK", "0"))
        first_attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0
        chosen = faults.rank is None or faults.rank == rank

        def call(self, micro_batches, step):
            if step == faults.kill_at_step + 1 and chosen and (first_attempt or faults.every_attempt):
                die()  # before step K+1: step K and whatever the loop did after it are done
            return real_call(self, micro_batches, step)

        TrainStep.__call__ = call
    if faults.kill_in_save:
        real_write = checkpoint.write_json

        def write_json(path, data):
            if Path(path).name == checkpoint.LATEST:
                die()
            return real_write(path, data)

        checkpoint.write_json = write_json
    # Workers started by `train --nproc-per-node` run this script, with the same faults.
    launch.worker_entry = lambda: [os.path.abspath(__file__), *fault_argv, "--", "--worker"]


def main(argv: list[str]) -> int:
    split = argv.index("--")
    fault_argv, args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(prog="fault_child.py")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--rank", type=int)
    parser.add_argument("--every-attempt", action="store_true")
    parser.add_argument("--kill-in-save", action="store_true")
    install(parser.parse_args(fault_argv), fault_argv)
    if args[:1] == ["--worker"]:
        return worker.main(args[1:])
    return resnets_main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
