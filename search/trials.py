"""`trials.csv` and the progress lines of a search; no Ray here (`search.tune` feeds it).

`trials.csv` holds one row per finished trial (per member of a population trial, its
`trial_id` `search.members.member_key`), rewritten atomically as trials finish: `trial_id`,
`status` (one of `experiment.status.ROW_STATUSES`), one column per searched dotted key, every
metric of `experiment.config.METRICS`, then `FIELDS_AFTER_METRICS` (the MI cap and bound,
steps, time, divergence, placement, reason). The points the compiler refused were never run
and have no row: the Optuna study holds them. Each finished trial also prints one line
(`format_line`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiment.config import IMAGE_DATASETS, METRICS
from experiment.files import fault_error, fault_text, write_atomic
from experiment.status import DIVERGED, ERROR, REFUSED, ROW_STATUSES
from search.checkpoints import read_final, trial_dirname
from search.members import MEMBERS, SLOTS, Member, decode, final, member_key, parse_key
from search.plan import JOURNAL_FILE, SearchPlan

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
    """Write atomically: a reader never sees a half-written file, a full disk leaves the
    last whole one."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    write_atomic(path, text.getvalue())


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    return "" if value is None else value


def result_row(
    plan: SearchPlan,
    trial_id: str,
    config: Mapping[str, Any],
    member: Member,
    error: str | None = None,
) -> dict[str, Any]:
    """One row from a trial's (or member's) config and its part of the trial's last result,
    its status final (`search.members.final`); `error`: why a trial that raised did."""
    result = member.metrics
    row: dict[str, Any] = {"trial_id": trial_id, "status": member.status}
    row |= {key: config.get(key, result.get(key)) for key in plan.space.keys}
    row |= {metric: result.get(metric) for metric in METRICS}
    row |= {field: result.get(field) for field in FIELDS_AFTER_METRICS}
    row["mi_bound"] = plan.mi_metric
    row["time_s"] = result.get("time_total_s")
    row["ended_at"] = result.get("timestamp")  # unix seconds of the last result
    if error is not None:
        row["reason"] = error
    return row


def trial_rows(plan: SearchPlan, trial: Any) -> list[tuple[str, dict[str, Any]]]:
    """(key, row) of a Tune trial (`trial_id`, `config`, `last_result`, `status`,
    `get_error`): one row, or one per member of a population trial (key `trial_id#k`)."""
    error = _error_text(trial) if trial.status == "ERROR" else None
    points = trial.config.get(MEMBERS)
    size = None if points is None else len(points)
    rows = []
    for member in final(trial.last_result, size, error is not None):
        if SLOTS in trial.config and member.index is None:
            continue  # a rolling trial's rows are its members' (none reported yet: no row)
        key = member_key(trial.trial_id, member.index)
        config = trial.config if member.index is None else {}
        if points is not None and member.index is not None:
            config = points[member.index]  # a rolling trial's members carry their points
        rows.append((key, result_row(plan, key, config, member, error)))
    return rows


def ended_rows(plan: SearchPlan, trial: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    """key -> row of each member of a rolling trial that `result` says has ended."""
    if SLOTS not in trial.config:
        return {}
    rows = {}
    for member in decode(result):
        if member.index is not None and member.status in ROW_STATUSES:
            key = member_key(trial.trial_id, member.index)
            rows[key] = result_row(plan, key, {}, member)
    return rows


def recover_rows(plan: SearchPlan, told: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Rows for trials the study holds as finished (`told`: key -> point) that trials.csv
    lacks, from the `final.yaml` of their trial's checkpoints: a row that was cut, and
    dropped, after Tune's last snapshot (so no Tune record brings it back). Their keys."""
    rows = read_rows(plan.trials_csv)
    missing = {k: p for k, p in told.items() if k not in rows}
    found = []
    for key, point in missing.items():
        trial_id, index = parse_key(key)
        folder = Path(plan.experiment_path) / trial_dirname(trial_id)
        for checkpoint in sorted(folder.glob("checkpoint_*"), reverse=True):
            final_metrics = read_final(checkpoint)
            if final_metrics is None:
                continue
            for member in final(final_metrics, None):
                if member.index == index and member.status in ROW_STATUSES:
                    rows[key] = result_row(plan, key, point, member)
                    found.append(key)
            break
    if found:
        write_rows(plan.trials_csv, csv_fields(plan), rows.values())
        plan.sync("trials.csv")
    return found


def _full_error(trial: Any) -> str:
    """A failed trial's traceback text: Tune's error file in the driver's staging folder (it
    reaches the storage later, or never on a full disk), else the storage's copy."""
    path = getattr(trial, "error_file", None)
    try:
        if path and Path(path).is_file():
            return Path(path).read_text(errors="replace")
        return str(trial.get_error() or "")
    except Exception:  # the error file may be gone; the status says enough
        return ""


def _error_text(trial: Any) -> str:
    text = _full_error(trial)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "the trial raised (see its error.txt)"


# --------------------------------------------------------------------------- the ledger


class Ledger:
    """trials.csv kept as trials finish (rewritten and, with a URI storage, synced each time),
    one line printed per finished trial or member, then `after_trial(plan)`. Fed Tune's trial
    objects by `search.tune.Progress`."""

    def __init__(self, plan: SearchPlan, after_trial: Callable[[SearchPlan], Any] | None = None):
        self.plan = plan
        self.after_trial = after_trial  # e.g. rewrite the dashboard (analysis, a layer above)
        self.rows: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        self.rows = read_rows(self.plan.trials_csv)  # a resumed search keeps earlier rows

    def start(self, trial: Any) -> None:
        """A population trial trains for a while before its members' lines: say it started."""
        points = trial.config.get(MEMBERS)
        keys = [member_key(trial.trial_id, k) for k in range(len(points or ()))]
        if SLOTS in trial.config:
            print(
                f"[{len(self.rows):>3}/{self.plan.num_samples}] {trial.trial_id}  training "
                f"{trial.config[SLOTS]} members at a time, each slot refilled as its member ends",
                flush=True,
            )
        elif points and not all(key in self.rows for key in keys):  # not a finished one resumed
            print(
                f"[{len(self.rows):>3}/{self.plan.num_samples}] {trial.trial_id}  training "
                f"{len(points)} members together",
                flush=True,
            )

    def result(self, trial: Any, result: Mapping[str, Any]) -> None:
        """Rows for the members of a rolling trial that ended in this result."""
        rows = {k: r for k, r in ended_rows(self.plan, trial, result).items() if k not in self.rows}
        if rows:
            self._add(trial, rows)

    def check_fault(self, trial: Any) -> None:
        """A trial that failed on a full or read-only disk stops the search (an OSError)
        before its failure is recorded: `--resume` trains it again once the disk is fixed."""
        words = fault_text(_full_error(trial))
        if words is not None:
            raise fault_error(words, f"trial {trial.trial_id}'s storage ({self.plan.storage})")

    def finish(self, trial: Any) -> None:
        if self._recorded(trial):
            return
        self._add(trial, dict(trial_rows(self.plan, trial)))  # one per population member

    def _add(self, trial: Any, rows: dict[str, dict[str, Any]]) -> None:
        self.rows.update(rows)
        self._write()
        before = len(self.rows) - len(rows)
        for done, row in enumerate(rows.values(), start=before + 1):
            line = format_line(self.plan, row, done)
            if row["status"] == ERROR and getattr(trial, "error_file", None):
                line += f"  traceback: {trial.error_file}"  # Tune's console copy is off
            print(line, flush=True)
        if self.after_trial is not None:
            try:  # the rows are saved: a failure here never loses a result
                self.after_trial(self.plan)
            except Exception as error:
                print(f"note: after-trial hook failed ({type(error).__name__}: {error})")

    def end(self, trials: Iterable[Any]) -> None:
        """The search ended: rows for finished trials no callback recorded, then a write."""
        for trial in trials:
            if trial.status in ("TERMINATED", "ERROR") and not self._recorded(trial):
                self.rows.update(trial_rows(self.plan, trial))
        self._write()

    def _recorded(self, trial: Any) -> bool:
        """Finished before a resume and recorded then: its rows stay as they were written."""
        again = bool((trial.last_result or {}).get("reported_again"))
        return again and any(key in self.rows for key, _ in trial_rows(self.plan, trial))

    def _write(self) -> None:
        self.plan.local_dir.mkdir(parents=True, exist_ok=True)
        write_rows(self.plan.trials_csv, csv_fields(self.plan), self.rows.values())
        self.plan.sync("trials.csv")
        self.plan.sync(JOURNAL_FILE)


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
    if row["status"] in (ERROR, REFUSED) and row.get("reason"):
        line += f"  ({str(row['reason'])[:120]})"
    elif row["status"] == DIVERGED:
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
