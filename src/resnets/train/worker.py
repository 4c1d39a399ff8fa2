"""The process torchrun starts for `resnets.train(..., nproc_per_node=N)` (and so for
`resnets train --nproc-per-node N`):

    python -m torch.distributed.run ... -m resnets.train.worker --config FILE [--resume] RUN_DIR

Each worker calls `resnets.train` with the launcher's config in its own process: it joins the
group, trains its share, and (rank 0) writes the run directory; the launcher reads the summary
from there. A user error ends the worker with one line on stderr and exit code 2, as the
`resnets` command would; nothing else is printed beyond the console table when asked for.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from resnets.errors import ResNetsError
from resnets.train.config import TrainConfig
from resnets.train.launch import train

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker's share of the run; the process exit code (0, 2 for a user error, 130)."""
    parser = argparse.ArgumentParser(prog="python -m resnets.train.worker", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--config", metavar="FILE", help="JSON written by the launcher: config and command")
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR (with --config's changes)")
    parser.add_argument("--console", action="store_true", help="progress bar and table (rank 0)")
    parser.add_argument("--table-to-stderr", action="store_true", help="the table on stderr, not stdout")
    parser.add_argument("--stop-after-epoch", type=int)
    args = parser.parse_args(argv)
    try:
        config, command = None, None
        if args.config:
            record = json.loads(Path(args.config).read_text(encoding="utf-8"))
            config, command = TrainConfig.from_dict(record["config"]), record.get("command")
        train(
            config,
            args.run_dir,
            resume=args.resume,
            console=args.console,
            table_stream=sys.stderr if args.table_to_stderr else sys.stdout,
            stop_after_epoch=args.stop_after_epoch,
            command=command,
        )
    except ResNetsError as exc:
        print(f"resnets train: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        detail = f": {exc}" if str(exc) else ""
        print(f"resnets train: interrupted{detail}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
