"""Checkpoints a resumed trial can use: every one is kept during a search, the newest wins."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ray import tune

from search.tune import prune_checkpoints, restore_candidates


def make_trial(root: Path, name: str, count: int) -> Path:
    trial = root / name
    for i in range(count):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
        (trial / f"checkpoint_{i:06d}" / "trainer.pt").write_text(str(i))
    return trial


def test_a_stale_snapshot_still_resumes_from_the_newest_checkpoint(tmp_path: Path) -> None:
    trial = make_trial(tmp_path, "trial_a", 3)
    named = tune.Checkpoint.from_directory(str(trial / "checkpoint_000000"))  # what Tune names
    candidates = [Path(c.path).name for c in restore_candidates(named)]
    assert candidates == ["checkpoint_000002", "checkpoint_000001", "checkpoint_000000"]
    assert restore_candidates(None) == []


def test_pruning_after_the_search_keeps_each_trials_newest(tmp_path: Path) -> None:
    make_trial(tmp_path / "exp", "trial_a", 3)
    make_trial(tmp_path / "exp", "trial_b", 1)
    plan = SimpleNamespace(is_remote=False, experiment_path=str(tmp_path / "exp"))
    assert prune_checkpoints(plan) == 2
    kept = sorted(str(p.relative_to(tmp_path / "exp")) for p in (tmp_path / "exp").glob("*/*"))
    assert kept == ["trial_a/checkpoint_000002", "trial_b/checkpoint_000000"]
    assert prune_checkpoints(SimpleNamespace(is_remote=True, experiment_path="s3://x")) == 0
