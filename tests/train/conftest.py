"""The real default run (`resnets train`, no arguments), once per test session, shared by the
tests that check its accuracy, its run directory, eval and resume. Nothing is cached across
sessions: every session trains it afresh."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import resnets


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("default-run")
    env = dict(os.environ)
    src = str(Path(resnets.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "resnets", "train"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (cwd / "runs").iterdir()
    return SimpleNamespace(
        dir=run_dir,
        stdout=proc.stdout,
        stderr=proc.stderr,
        wall=wall,
        summary=json.loads((run_dir / "summary.json").read_text()),
        record=json.loads((run_dir / "config.json").read_text()),
    )
