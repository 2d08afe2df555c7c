"""Export chosen trials as experiment files that `run_search.py train` re-trains as they are.

Choosing: `--where` conditions filter the finished trials (`nll<=1.40`, `mi>0.5`, any numeric
column of `analysis.load`), then `--pick` chooses one: `min-nll`, `max-mi` (the search's MI
objective: `mi`, or `rate` on images), `knee` (`analysis.pareto.knee`) or `trial=ID` (any
recorded trial); `--all-pareto` takes every Pareto trial instead.

The file: the experiment as that trial ran it (the searched values set, `space` emptied, the
name `<experiment>-<trial>`, the same seed, and `train.threads` set to the threads the trial
had, so CPU training repeats its numbers). Its provenance (where it came from, why it was
picked, the metrics recorded) is a comment block at the top of a YAML file; a JSON file
cannot hold comments, so it gets `<file>.provenance.json` beside it.
"""

from __future__ import annotations

import json
import math
import operator
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from analysis.pareto import knee, pareto_front
from analysis.results import METRIC_COLUMNS, Results, ResultsError, load_results
from experiment.config import Experiment
from experiment.files import write_atomic

PICKS = ("min-nll", "max-mi", "knee")  # and trial=ID
FORMATS = ("yaml", "json")
OPERATORS = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_CONDITION = re.compile(r"^\s*([^<>=!]+?)\s*(<=|>=|==|!=|<|>)\s*([^<>=!\s]+)\s*$")


def where(frame: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """The rows meeting every condition `COLUMN OP NUMBER` (OP: < <= > >= == !=)."""
    for condition in conditions:
        match = _CONDITION.match(condition)
        if not match:
            raise ResultsError(f"--where {condition!r}: expected COLUMN OP NUMBER, e.g. nll<=1.40")
        column, op, text = match.groups()
        if column not in frame:
            numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
            raise ResultsError(
                f"--where {condition!r}: no column {column!r}; columns: {', '.join(numeric)}"
            )
        try:
            value = float(text)
        except ValueError:
            raise ResultsError(f"--where {condition!r}: {text!r} is not a number") from None
        frame = frame[OPERATORS[op](pd.to_numeric(frame[column], errors="coerce"), value)]
    return frame


def pick(results: Results, choice: str, candidates: pd.DataFrame) -> tuple[pd.Series, str]:
    """One trial of `candidates` by `choice`, and why it was picked (for the provenance)."""
    metrics, modes = results.objectives
    if choice.startswith("trial="):
        trial_id = choice.removeprefix("trial=")
        rows = results.trials[results.trials["trial_id"].astype(str) == trial_id]
        if rows.empty:
            known = ", ".join(results.trials["trial_id"].astype(str).head(20))
            raise ResultsError(f"no trial {trial_id!r} in {results.location}; trials: {known}")
        return rows.iloc[0], f"trial {trial_id}, chosen by id"
    if choice not in PICKS:
        raise ResultsError(f"--pick {choice!r}: choose one of {', '.join(PICKS)} or trial=ID")
    if candidates.empty:
        raise ResultsError(f"{results.location}: no finished trial meets the conditions")
    if choice == "knee":
        row = knee(candidates, metrics, modes)
        if row is None:
            raise ResultsError(f"{results.location}: no trial with finite objectives")
        objectives = ", ".join(metrics)
        return row, f"the knee of the Pareto front over ({objectives}) (nearest the ideal point)"
    metric, best = ("nll", "idxmin") if choice == "min-nll" else (results.mi_metric, "idxmax")
    if not metric or metric not in candidates:
        raise ResultsError(f"--pick {choice}: the trials have no {metric or 'MI'} column")
    return candidates.loc[getattr(candidates[metric], best)()], f"{choice} ({metric})"


def trial_experiment(results: Results, row: pd.Series) -> Experiment:
    """The experiment as that trial ran it, ready to train on its own."""
    values = {k: float(row[k]) for k in results.searched if pd.notna(row[k])}
    experiment = results.experiment
    threads = experiment.train.threads or max(1, math.ceil(experiment.resources.cpu))
    values |= {"name": f"{experiment.name}-{row['trial_id']}", "space": {}}
    return experiment.with_values({**values, "train.threads": threads})


def provenance(results: Results, row: pd.Series, reason: str) -> dict:
    """Where a file came from and the metrics the search recorded for it."""
    recorded = {m: float(row[m]) for m in METRIC_COLUMNS if m in row and pd.notna(row[m])}
    for extra in ("mi_cap", "step"):
        if extra in row and pd.notna(row[extra]):
            recorded[extra] = float(row[extra])
    return {
        "source": results.location,
        "trial_id": str(row["trial_id"]),
        "status": str(row.get("status", "")),
        "picked": reason,
        "recorded": recorded,
    }


def render(experiment: Experiment, about: dict, fmt: str, path: Path) -> str:
    """The file's text: YAML with the provenance as comments, or plain JSON."""
    data = experiment.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    recorded = ", ".join(f"{k} {v:.8g}" for k, v in about["recorded"].items())
    header = [
        f"Exported from {about['source']}, trial {about['trial_id']} "
        f"(status {about['status']}): {about['picked']}.",
        f"Recorded by the search: {recorded or 'nothing'}.",
        "Same seed and train.threads as the trial: CPU training repeats these numbers.",
        f"Re-train: python run_search.py train {path}",
    ]
    comment = "".join(f"# {line}\n" for line in header)
    return comment + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def export(
    location: str | Path,
    picks: Sequence[str] = (),
    conditions: Sequence[str] = (),
    all_pareto: bool = False,
    fmt: str = "yaml",
    out: str | Path | None = None,
) -> list[Path]:
    """Write the chosen trials' experiment files; their paths. Without `picks`: the Pareto set
    of the trials meeting `conditions`."""
    if fmt not in FORMATS:
        raise ResultsError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    results = load_results(location)
    candidates = where(results.finished, conditions)
    chosen = [pick(results, choice, candidates) for choice in picks]
    if all_pareto or not picks:
        front = pareto_front(candidates, *results.objectives)
        if front.empty:
            raise ResultsError(f"{location}: no finished trial meets the conditions")
        chosen += [(row, "on the Pareto front") for _, row in front.iterrows()]
    paths = _paths(results, [row for row, _ in chosen], fmt, out)
    for (row, reason), path in zip(chosen, paths, strict=True):
        experiment = trial_experiment(results, row)
        about = provenance(results, row, reason)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, render(experiment, about, fmt, path))
        if fmt == "json":
            sidecar = path.with_name(path.name + ".provenance.json")
            write_atomic(sidecar, json.dumps(about, indent=2) + "\n")
    return paths


def _paths(results: Results, rows: list[pd.Series], fmt: str, out: str | Path | None):
    names = list(dict.fromkeys(f"{results.name}-{row['trial_id']}.{fmt}" for row in rows))
    if out is not None and Path(out).suffix in (".yaml", ".yml", ".json"):
        if len(names) != 1:
            raise ResultsError(f"--out {out}: {len(names)} files to write; give a folder")
        return [Path(out)] * len(rows)
    local = "://" not in results.location
    folder = Path(out) if out is not None else (results.directory if local else Path()) / "exports"
    return [folder / f"{results.name}-{row['trial_id']}.{fmt}" for row in rows]


def retrain_command(results: Results, trial_id: str) -> str:
    """The two commands that re-train a trial from its recorded experiment."""
    file = shlex.quote(f"{results.name}-{trial_id}.yaml")
    location, pick = shlex.quote(str(results.location)), shlex.quote(f"trial={trial_id}")
    return (
        f"python run_search.py export {location} --pick {pick} --out {file}"
        f" && python run_search.py train {file}"
    )
