"""A trial's checkpoints on disk: which to resume from, the final metrics, pruning; no Ray.

Tune restores a trial from the checkpoint its last experiment snapshot names, and that snapshot
can lag several checkpoints behind the trial (it is written every few seconds), or name none
when the trial started after it. So while a search runs every checkpoint is kept, and a trial
resumes from the newest one on disk (`candidates`): finished work is not redone. Tune would
delete old checkpoints before it rewrites the snapshot (`num_to_keep`), and after a SIGKILL in
between the snapshot could name a deleted one and `--resume` could not restore that trial.
Every checkpoint Tune recorded stays after the search too: Tune's final snapshot names them
all (`Result.best_checkpoints`), and a deleted one would be a dangling reference (issue 18).
When a search finishes, `prune` deletes only those no Tune record names; an interrupted search
prunes nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from experiment.files import write_atomic
from experiment.typed_yaml import plain

FINAL_FILE = "final.yaml"  # beside a trial's last checkpoint: its final metrics
RESUME_ERRORS = (OSError, RuntimeError, KeyError, EOFError, ValueError)  # an unreadable one


def trial_dirname(trial_id: str) -> str:
    """A trial's folder in the experiment directory: its checkpoints and Tune's files."""
    return f"trial_{trial_id}"


def candidates(trial_dir: Path | None, named: str | None) -> list[Path]:
    """The checkpoint folders to resume a trial from, newest first.

    Every checkpoint in the trial's folder when this process can read it (local or shared
    storage), newest written first: a snapshot that lags, or that predates the trial's first
    checkpoint, loses nothing. Else (a URI) only the one Tune names, if any.
    """
    if trial_dir is not None and trial_dir.is_dir():
        found = sorted(trial_dir.glob("checkpoint_*"), key=lambda p: p.stat().st_mtime_ns)
        if found:
            return found[::-1]
    return [Path(named)] if named else []


def write_final(directory: Path, metrics: Mapping[str, Any]) -> None:
    """Mark a checkpoint as the trial's last, with its final metrics."""
    write_atomic(Path(directory) / FINAL_FILE, yaml.safe_dump(plain(dict(metrics))))


def read_final(directory: Path) -> dict[str, Any] | None:
    """The final metrics of a trial that finished before the driver stopped, if this is it."""
    path = Path(directory) / FINAL_FILE
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text())


def prune(experiment_path: str, named: Collection[str]) -> int:
    """Delete the checkpoints (local storage) that no Tune record names (`named`: the paths
    in Tune's final snapshot), e.g. those a run killed before Tune recorded them left; returns
    how many went. A trial's newest checkpoint always stays."""
    keep = {Path(p).resolve() for p in named}
    removed = 0
    for trial in Path(experiment_path).glob("trial_*"):
        for old in sorted(trial.glob("checkpoint_*"))[:-1]:
            if old.resolve() not in keep:
                shutil.rmtree(old, ignore_errors=True)
                removed += 1
    return removed
