"""The lines a finished search prints: counts, the best trial, the Pareto set, where it all is.

`read_summary` condenses a search's `trials.csv` (and the refused points the Optuna study
counted) into a `Summary`; `Summary.lines()` is what `run_search.py search` prints last.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.pareto import pareto_mask
from experiment.status import ERROR, OK, ROW_STATUSES
from search.plan import SearchPlan
from search.trials import format_number, read_rows


def dashboard_command(study: str) -> str:
    """How to open a study: optuna-dashboard takes a journal file's path or a storage URL
    (`pip install -e .[dashboard]` installs it)."""
    return f"optuna-dashboard {study}"


@dataclass(frozen=True)
class Summary:
    """What a finished search found; `main_search` prints it."""

    path: str  # the experiment directory (results)
    trials_csv: Path
    study_command: str  # the command that opens the Optuna study in optuna-dashboard
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
        labels = {ERROR: "failed"}  # raised, after search.max_failures retries
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
            f"best nll {format_number(self.best_nll)} (trial {self.best_trial or '-'}); "
            f"Pareto set over ({objectives}): {len(self.pareto)} trials",
            f"MI objective: {bound}",
            f"Optuna study: {self.study_command}",
            *([f"dashboard: {self.dashboard}"] if self.dashboard else []),
            f"results: {self.path}",
        ]


def pareto_set(
    rows: Iterable[Mapping[str, Any]], metrics: Sequence[str], modes: Sequence[str]
) -> list[str]:
    """Trial ids of the ok rows that no other ok row dominates (min/max per metric)."""
    ok = [row for row in rows if row.get("status") == OK]
    values = [[_float(row.get(m)) for m in metrics] for row in ok]
    if not ok:
        return []
    mask = pareto_mask(np.array(values, dtype=float), modes)
    return [row["trial_id"] for row, keep in zip(ok, mask, strict=True) if keep]


def read_summary(plan: SearchPlan, refused: int, dashboard: str = "") -> Summary:
    """The `Summary` of the plan's trials.csv; `refused` comes from the Optuna study (the
    refused points have no row)."""
    rows = list(read_rows(plan.trials_csv).values())
    counts = {s: sum(r["status"] == s for r in rows) for s in ROW_STATUSES}
    caps = [_float(r.get("mi_cap")) for r in rows]
    mi_cap = next((c for c in caps if math.isfinite(c)), math.nan)
    best, best_trial = math.inf, ""
    for row in rows:
        nll = _float(row.get("nll"))
        if row["status"] == OK and nll < best:
            best, best_trial = nll, row["trial_id"]
    return Summary(
        plan.experiment_path,
        plan.trials_csv,
        dashboard_command(plan.study),
        counts,
        best if best_trial else math.nan,
        best_trial,
        pareto_set(rows, plan.metrics, plan.modes),
        refused,
        plan.metrics,
        plan.mi_bound,
        mi_cap,
        dashboard,
    )


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    return number if math.isfinite(number) else math.inf
