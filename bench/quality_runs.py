"""One finished search of bench/search_quality.py, read back: its trials, times and curves.

A trial's time is when the study was told its result (the Optuna journal's
`datetime_complete`, seconds after the search started), its start when it was asked
(`datetime_start`), its steps trials.csv's `step`. Rows come from trials.csv (one per trial or
member), joined to the study by key (`search.members.member_key`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from quality_curves import Curve, anytime_curve, cumulative

from analysis.pareto import pareto_mask, reference_point, usable_mask
from search.members import member_key
from search.study import STUDY_NAME, open_storage

COLLAPSE_MI = 0.05  # issue 16's line for the collapse region (q(z|x) = p(z), mi ~ 0)


@dataclass
class Run:
    method: str
    seed: int
    wall_s: float  # the search's own wall time, Ray already up
    rows: pd.DataFrame  # trial_id, status, metrics, step, t (told), asked (seconds)
    metrics: list[str]
    modes: list[str]
    curves: dict[str, Curve] = field(default_factory=dict)  # "seconds", "steps": see `score`

    @property
    def usable(self) -> np.ndarray:
        return usable_mask(self.rows, self.metrics)

    def summary(self) -> dict[str, Any]:
        """Counts a reader wants beside the curves: trials, front size, collapsed trials,
        trials asked after the first result was told."""
        ok = self.rows[self.usable]
        front = pareto_mask(ok[self.metrics].to_numpy(dtype=float), self.modes)
        first_told = self.rows["t"].min() if len(self.rows) else math.nan
        collapsed = int((ok["mi"] < COLLAPSE_MI).sum()) if "mi" in ok else 0
        return {
            "trials": len(self.rows),
            "ok": len(ok),
            "front": int(front.sum()),
            "collapsed": collapsed,
            "asked_after_a_result": int((self.rows["asked"] > first_told).sum()),
        }


def read_run(method: str, seed: int, result: dict[str, Any]) -> Run:
    """The run a child process reported (`start`, `end`, `csv`, `study`, `metrics`, `modes`)."""
    rows = pd.read_csv(result["csv"])
    rows["trial_id"] = rows["trial_id"].astype(str)
    told, asked = journal_times(result["study"], result["start"])
    rows["t"] = rows["trial_id"].map(told)
    rows["asked"] = rows["trial_id"].map(asked)
    missing = rows["t"].isna()  # not in the study (never expected): Tune's last result time
    rows.loc[missing, "t"] = rows.loc[missing, "ended_at"] - result["start"]
    rows["step"] = rows["step"].fillna(0)
    return Run(
        method,
        seed,
        result["end"] - result["start"],
        rows,
        list(result["metrics"]),
        list(result["modes"]),
    )


def journal_times(study: str, start: float) -> tuple[dict[str, float], dict[str, float]]:
    """key -> seconds after `start` when each finished trial of the study was told, and when
    it was asked; refused and orphaned points (no row) are left out by the join."""
    loaded = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(study))
    told, asked = {}, {}
    for trial in loaded.get_trials(deepcopy=False):
        if "tune_trial_id" not in trial.user_attrs or trial.datetime_complete is None:
            continue
        key = member_key(trial.user_attrs["tune_trial_id"], trial.user_attrs.get("member"))
        told[key] = trial.datetime_complete.timestamp() - start
        asked[key] = trial.datetime_start.timestamp() - start
    return told, asked


def score(runs: dict[str, list[Run]], fixed: Sequence[float] | None = None) -> np.ndarray:
    """One reference point for every run of a space (`fixed`, else the worst usable trial's
    plus a margin), and each run's two curves against it: hypervolume against seconds and
    against the steps trained by then."""
    every = [r for rs in runs.values() for r in rs]
    if not every:
        return np.array([])
    metrics, modes = every[0].metrics, every[0].modes
    if fixed is not None:
        reference = np.asarray(fixed, dtype=float)
    else:
        values = np.concatenate([r.rows[r.usable][metrics].to_numpy(dtype=float) for r in every])
        reference = reference_point(values, modes)
    for run in every:
        v, usable = run.rows[metrics].to_numpy(dtype=float), run.usable
        t = run.rows["t"].to_numpy(dtype=float)
        run.curves["seconds"] = anytime_curve(t, v, usable, modes, reference)
        steps = cumulative(t, run.rows["step"].to_numpy(dtype=float))
        run.curves["steps"] = anytime_curve(steps, v, usable, modes, reference)
    return reference


def relocated(result: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`result` (a kept run.json) read from `folder`: its trials.csv and journal are named by
    the absolute paths they had when the run ended, inside the run's folder one level down
    (`<storage>/<search name>/`); where those are gone (the benchmark's folder was moved or
    copied), the same names under `folder`."""
    moved = dict(result)
    for key in ("csv", "study"):
        path = Path(result[key])
        here = folder / path.parent.name / path.name
        if not path.exists() and here.exists():
            moved[key] = str(here)
    return moved


def child_result(plan: Any, start: float, end: float) -> dict[str, Any]:
    """What the child process prints for `read_run` (kept beside it: one shape)."""
    return {
        "start": start,
        "end": end,
        "csv": str(plan.trials_csv),
        "study": str(plan.study),
        "metrics": list(plan.metrics),
        "modes": list(plan.modes),
    }
