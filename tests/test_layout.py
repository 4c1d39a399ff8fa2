"""The package's layout holds: imports flow one way (DESIGN.md) and none hides inside a function."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import resnets

SRC = Path(resnets.__file__).parent


def test_no_module_imports_our_own_modules_inside_a_function():
    hidden = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and id(node) not in top:
                names = [node.module]
            elif isinstance(node, ast.Import) and id(node) not in top:
                names = [a.name for a in node.names]
            for name in names:
                rel = str(path.relative_to(SRC))
                if name.split(".")[0] == "resnets":
                    hidden.append(f"{rel}:{node.lineno} imports {name}")
    assert not hidden, "imports of our own modules inside functions hide the layering:\n" + "\n".join(hidden)


def test_import_linter_contracts_hold():
    """cli -> tools -> runtime/data/weights -> models -> errors, and no cycle inside any package
    (the contracts are in pyproject.toml; `make lint` runs the same check)."""
    root = SRC.parent.parent
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extras"
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    result = subprocess.run([exe, "--no-cache"], cwd=root, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
