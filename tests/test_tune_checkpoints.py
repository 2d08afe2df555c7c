"""Checkpoints a resumed trial can use: every one is kept during a search, the newest wins."""

from __future__ import annotations

import os
import time
from pathlib import Path

from search import checkpoints


def make_trial(root: Path, name: str, count: int) -> Path:
    trial = root / name
    for i in range(count):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
        (trial / f"checkpoint_{i:06d}" / "trainer.pt").write_text(str(i))
    return trial


def test_a_stale_snapshot_still_resumes_from_the_newest_checkpoint(tmp_path: Path) -> None:
    trial = make_trial(tmp_path, "trial_a", 3)
    named = str(trial / "checkpoint_000000")  # what Tune's lagging snapshot names
    candidates = [p.name for p in checkpoints.candidates(trial, named)]
    assert candidates == ["checkpoint_000002", "checkpoint_000001", "checkpoint_000000"]
    # a snapshot taken before the trial's first checkpoint names none: the folder still counts
    assert checkpoints.candidates(trial, None)[0].name == "checkpoint_000002"
    remote = "s3://bucket/exp/trial_a/checkpoint_000000"  # not a folder here: only that one
    assert checkpoints.candidates(None, remote) == [Path(remote)]
    assert checkpoints.candidates(tmp_path / "no-trial", None) == []


def test_the_newest_written_checkpoint_wins_over_its_name(tmp_path: Path) -> None:
    """A trial Tune restarts without a checkpoint numbers its own from 0 again."""
    trial = make_trial(tmp_path, "trial_a", 3)
    rewritten = trial / "checkpoint_000000"
    os.utime(rewritten, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert checkpoints.candidates(trial, None)[0] == rewritten


def test_the_final_metrics_travel_with_the_last_checkpoint(tmp_path: Path) -> None:
    assert checkpoints.read_final(tmp_path) is None
    checkpoints.write_final(
        tmp_path, {"step": 300, "nll": 1.25, "status": "ok", "mi": float("nan")}
    )
    final = checkpoints.read_final(tmp_path)
    assert final is not None and final["step"] == 300 and final["nll"] == 1.25
    assert final["mi"] != final["mi"]  # NaN survives the round trip


def test_pruning_deletes_only_what_no_tune_record_names(tmp_path: Path) -> None:
    make_trial(tmp_path / "exp", "trial_a", 3)
    make_trial(tmp_path / "exp", "trial_b", 1)
    named = [str(tmp_path / "exp" / "trial_a" / "checkpoint_000001")]
    assert checkpoints.prune(str(tmp_path / "exp"), named) == 1
    kept = sorted(str(p.relative_to(tmp_path / "exp")) for p in (tmp_path / "exp").glob("*/*"))
    assert kept == [
        "trial_a/checkpoint_000001",  # named by Tune: kept
        "trial_a/checkpoint_000002",  # the newest: kept
        "trial_b/checkpoint_000000",
    ]
