"""`trials.csv` and the progress lines of a search; no Ray here (`search.tune` feeds it).

`trials.csv` holds one row per finished trial, rewritten atomically as trials finish:
`trial_id`, `status` (one of `STATUSES`), one column per searched dotted key, every metric of
DESIGN.md, then `FIELDS_AFTER_METRICS` (the MI cap and bound, steps, time, divergence,
placement, reason). The points the compiler refused were never run and have no row: the
Optuna study holds them. Each finished trial also prints one line (`format_line`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from search.config import METRICS
from search.plan import IMAGE_DATASETS, SearchPlan

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


def result_row(
    plan: SearchPlan,
    trial_id: str,
    config: Mapping[str, Any],
    result: Mapping[str, Any],
    error: str | None = None,
) -> dict[str, Any]:
    """One row from a trial's config and last result; `error`: why a trial that raised did."""
    status = result.get("status", "stopped")
    if error is not None:
        status = "error"
    elif status == "running":
        status = "stopped"  # stopped early by the scheduler
    row: dict[str, Any] = {"trial_id": trial_id, "status": status}
    row |= {key: config.get(key) for key in plan.space.keys}
    row |= {metric: result.get(metric) for metric in METRICS}
    row |= {field: result.get(field) for field in FIELDS_AFTER_METRICS}
    row["mi_bound"] = plan.mi_metric
    row["time_s"] = result.get("time_total_s")
    row["ended_at"] = result.get("timestamp")  # unix seconds of the last result
    if error is not None:
        row["reason"] = error
    return row


def trial_row(plan: SearchPlan, trial: Any) -> dict[str, Any]:
    """The row of a Tune trial (`trial_id`, `config`, `last_result`, `status`, `get_error`)."""
    error = _error_text(trial) if trial.status == "ERROR" else None
    return result_row(plan, trial.trial_id, trial.config, trial.last_result or {}, error)


def _error_text(trial: Any) -> str:
    try:
        text = str(trial.get_error() or "")
    except Exception:  # the error file may be gone; the status says enough
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "the trial raised (see its error.txt)"


# --------------------------------------------------------------------------- progress lines


def format_line(plan: SearchPlan, row: Mapping[str, Any], done: int) -> str:
    """`[  3/12] 4c1d0a2b  ok        beta=0.87 lambda=215  nll 1.412 mi 0.913  21 s`."""
    params = " ".join(f"{_short(k)}={format_number(row.get(k))}" for k in plan.space.keys)
    mi = plan.mi_metric or ("rate" if plan.experiment.dataset.name in IMAGE_DATASETS else "mi")
    shown = dict.fromkeys(["nll", *plan.metrics, mi])  # the objectives, nll and an MI bound
    values = " ".join(f"{m} {format_number(row.get(m))}" for m in shown)
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


def format_number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return "nan" if math.isnan(number) else f"{number:.4g}"
