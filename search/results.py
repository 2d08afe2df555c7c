"""The results of a search, and the lines that report them; no Ray here (`search.tune` runs it).

A search writes its results to `<storage>/<name>/` (with a URI storage, a local copy in
`~/.cache/infoae-search/<name>/` is uploaded beside Tune's files):

- `experiment.yaml`: the experiment as run, with its resolved metrics; `--resume` reads it.
- `trials.csv`: one row per finished trial, rewritten as trials finish: `trial_id`, `status`
  (one of `STATUSES`), one column per searched dotted key, every metric of DESIGN.md, then
  `FIELDS_AFTER_METRICS` (the MI cap and bound, steps, time, divergence, placement, reason).
- `optuna.db`: the Optuna study (SQLite: `optuna-dashboard sqlite:///<path>`); it also holds
  the points the compiler refused, which were never run and have no row.
- `report.html`: the dashboard `analysis.report` writes from the two files above.

Tune's own files (trial directories, checkpoints, each failed trial's `error.txt`) sit beside
them. This module reads and writes `trials.csv`, formats the one progress line per finished
trial, and condenses the rows into the `Summary` a finished search prints.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.pareto import pareto_mask
from search.config import METRICS

if TYPE_CHECKING:  # the plan is made in search.tune, which imports ray
    from search.tune import SearchPlan

IMAGE_DATASETS = ("mnist", "fashion-mnist")
STATUSES = ("ok", "diverged", "refused", "stopped", "error")
FIELDS_AFTER_METRICS = (
    "mi_cap",
    "mi_bound",
    "step",
    "time_s",
    "ended_at",
    "diverged_step",
    "diverged_term",
    "restored_from_step",
    "node_id",
    "gpu_ids",
    "reason",
)


# --------------------------------------------------------------------------- trials.csv


def csv_fields(plan: SearchPlan) -> list[str]:
    return ["trial_id", "status", *plan.space.keys, *METRICS, *FIELDS_AFTER_METRICS]


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    """trial_id -> row of an existing trials.csv (empty when there is none)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["trial_id"]: row for row in csv.DictReader(handle)}


def write_rows(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write atomically: a reader never sees a half-written file."""
    partial = path.with_suffix(".csv.tmp")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    partial.replace(path)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    return "" if value is None else value


# --------------------------------------------------------------------------- progress lines


def format_line(plan: SearchPlan, row: Mapping[str, Any], done: int) -> str:
    """`[  3/12] 4c1d0a2b  ok        beta=0.87 lambda=215  nll 1.412 mi 0.913  21 s`."""
    params = " ".join(f"{_short(k)}={_num(row.get(k))}" for k in plan.space.keys)
    mi = plan.mi_metric or ("rate" if plan.experiment.dataset.name in IMAGE_DATASETS else "mi")
    shown = dict.fromkeys(["nll", *plan.metrics, mi])  # the objectives, nll and an MI bound
    values = " ".join(f"{m} {_num(row.get(m))}" for m in shown)
    line = f"[{done:>3}/{plan.num_samples}] {row['trial_id']}  {row['status']:<9} {params}"
    line += f"  {values}"
    if row.get("time_s") not in (None, ""):
        line += f"  {float(row['time_s']):.0f} s"
    if row["status"] in ("error", "refused") and row.get("reason"):
        line += f"  ({str(row['reason'])[:120]})"
    elif row["status"] == "diverged":
        line += f"  (non-finite {row.get('diverged_term')} at step {row.get('diverged_step')})"
    return line


def _short(key: str) -> str:
    return key.split(".", 2)[-1] if key.startswith("objective.") else key


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return "nan" if math.isnan(number) else f"{number:.4g}"


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Summary:
    """What a finished search found; `main_search` prints it."""

    path: str  # the experiment directory (results)
    trials_csv: Path
    study_url: str
    counts: dict[str, int]  # status -> trials
    best_nll: float
    best_trial: str
    pareto: list[str]  # trial ids of the non-dominated ok trials
    refused: int  # points the compiler refused: told to Optuna as failed, never run
    metrics: tuple[str, ...]
    mi_bound: str
    mi_cap: float  # log N of the evaluation set (NaN before any trial evaluated)
    dashboard: str = ""  # the HTML report (analysis.report), when one was written

    def lines(self) -> list[str]:
        labels = {"error": "failed"}  # raised, after search.max_failures retries
        counts = ", ".join(f"{n} {labels.get(s, s)}" for s, n in self.counts.items() if n)
        bound = self.mi_bound or "none"
        if self.mi_bound.startswith("mi") and math.isfinite(self.mi_cap):
            bound += f" = {self.mi_cap:.2f} nats"
        total = sum(self.counts.values())
        objectives = ", ".join(self.metrics)
        refused = (
            f"; {self.refused} points the compiler refused were not run" if self.refused else ""
        )
        return [
            f"search finished: {total} trials ({counts or 'none'}){refused}",
            f"best nll {_num(self.best_nll)} (trial {self.best_trial or '-'}); Pareto set over "
            f"({objectives}): {len(self.pareto)} trials",
            f"MI objective: {bound}",
            f"Optuna study: optuna-dashboard {self.study_url}",
            *([f"dashboard: {self.dashboard}"] if self.dashboard else []),
            f"results: {self.path}",
        ]


def pareto_set(
    rows: Iterable[Mapping[str, Any]], metrics: Sequence[str], modes: Sequence[str]
) -> list[str]:
    """Trial ids of the ok rows that no other ok row dominates (min/max per metric)."""
    ok = [row for row in rows if row.get("status") == "ok"]
    values = [[_float(row.get(m)) for m in metrics] for row in ok]
    if not ok:
        return []
    mask = pareto_mask(np.array(values, dtype=float), modes)
    return [row["trial_id"] for row, keep in zip(ok, mask, strict=True) if keep]


def read_summary(plan: SearchPlan, refused: int) -> Summary:
    """The `Summary` of the plan's trials.csv; `refused` comes from the Optuna study (the
    refused points have no row)."""
    rows = list(read_rows(plan.trials_csv).values())
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    caps = [_float(r.get("mi_cap")) for r in rows]
    mi_cap = next((c for c in caps if math.isfinite(c)), math.nan)
    best, best_trial = math.inf, ""
    for row in rows:
        nll = _float(row.get("nll"))
        if row["status"] == "ok" and nll < best:
            best, best_trial = nll, row["trial_id"]
    return Summary(
        plan.experiment_path,
        plan.trials_csv,
        plan.study_url,
        counts,
        best if best_trial else math.nan,
        best_trial,
        pareto_set(rows, plan.metrics, plan.modes),
        refused,
        plan.metrics,
        plan.mi_bound,
        mi_cap,
    )


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    return number if math.isfinite(number) else math.inf
