"""A benchmark's search in a fresh process: its own Ray, workers importing `tree`'s code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_child(code: str, tree: Path, what: str) -> dict[str, Any]:
    """Run `code` with `python -c` in `tree`; the JSON object its last stdout line prints.
    A child that fails ends the benchmark with its output, named by `what`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
