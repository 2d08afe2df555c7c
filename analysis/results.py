"""A search's results as tidy DataFrames: `load` (one row per trial) and `load_curves` (one
row per evaluation of each trial).

`load` reads `experiment.yaml` and `trials.csv` and adds, per trial, what a researcher filters
and plots by: `experiment` (which search), `family`, `alpha1`, `alpha2` and one
`lambda:<term>` column per divergence term (the compiled Lagrangian of the trial's values,
Definition 5), beside the searched dotted keys, `status`, every metric, and the bound names
(`mi_bound`: the MI objective; `bound:<metric>`: `lower` or `upper` for each MI estimate).
Trials still training (a `trial_*/result.json` but no row yet) come as status `unfinished`
with their latest evaluation, so the frame works while a search runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.pareto import usable_mask
from analysis.sources import (
    ResultsError,
    check_trials_csv,
    local_copy,
    read_results,
    result_files,
)
from experiment.config import METRICS, ConfigError, Experiment, load_experiment
from experiment.config import MI_BOUNDS as SIDES
from experiment.status import UNFINISHED
from search.members import MEMBERS, Member, decode, member_key, point_of
from search.spaces import FAMILY_ALIASES

__all__ = ["MI_BOUNDS", "Results", "ResultsError", "load", "load_curves", "load_results"]

TOP_LEVEL_KEYS = ("dataset", "model", "objective", "train", "resources", "seed")
BOUND_PREFIX = "bound:"  # + an MI estimate: `lower` or `upper` (bound:mi, bound:rate)
LAMBDA_PREFIX = "lambda:"  # + the term in the paper's notation, e.g. lambda:MMD(q(z)||p(z))
ESTIMATORS = {  # how each estimate of I_q(x;z) is made; its side is experiment.config.MI_BOUNDS
    "mi": "aggregate posterior over the eval set, each point's own term included",
    "mi_ba": "Barber-Agakov: H(x) - distortion",
    "mi_upper": "aggregate posterior, leave-one-out",
    "rate": "rate = E KL(q(z|x)||p(z))",
}
MI_BOUNDS = {m: (SIDES[m], how) for m, how in ESTIMATORS.items()}  # metric -> (side, how)
METRIC_COLUMNS = METRICS


@dataclass(frozen=True)
class Results:
    """One experiment: where it is, the experiment as run, its trials (tidy)."""

    location: str  # the path or URI it was read from
    directory: Path  # the local folder read (the cache of a URI)
    experiment: Experiment
    trials: pd.DataFrame  # one row per trial, see `load`

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def searched(self) -> list[str]:
        """The dotted experiment keys the search varied (columns of `trials`)."""
        return searched_keys(self.trials)

    @property
    def objectives(self) -> tuple[list[str], list[str]]:
        """(metrics, modes) the search optimised, as recorded in experiment.yaml."""
        return list(self.experiment.search.metrics), list(self.experiment.search.modes)

    @property
    def mi_metric(self) -> str:
        """The MI objective (mi or rate), else the first MI estimate there is."""
        metrics = self.objectives[0]
        return next((m for m in [*metrics, *MI_BOUNDS] if m in MI_BOUNDS and m in self.trials), "")

    @property
    def finished(self) -> pd.DataFrame:
        """Trials that finished `ok` with finite objectives: what fronts are made of."""
        return self.trials[usable_mask(self.trials, self.objectives[0])]


def searched_keys(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if "." in c and c.split(".")[0] in TOP_LEVEL_KEYS]


def load_results(location: str | Path) -> Results:
    """Read one experiment directory (a path or a storage URI)."""
    directory = local_copy(location)
    config, csv = directory / "experiment.yaml", directory / "trials.csv"
    if not config.is_file():
        raise ResultsError(f"{location}: no experiment.yaml; is it an experiment directory?")
    try:
        experiment = load_experiment(config)
    except ConfigError as error:
        raise ResultsError(str(error)) from None
    if csv.is_file():
        check_trials_csv(csv)
    trials = pd.read_csv(csv, dtype={"trial_id": str}) if csv.is_file() else pd.DataFrame()
    running = _unfinished_rows(directory, set(trials.get("trial_id", [])))
    if running:
        trials = pd.concat([trials, pd.DataFrame(running)], ignore_index=True)
    if trials.empty:
        raise ResultsError(f"{location}: no trials recorded yet")
    for metric in (*METRIC_COLUMNS, "mi_cap", "time_s", "ended_at", "step"):
        if metric in trials:
            trials[metric] = pd.to_numeric(trials[metric], errors="coerce")
    trials = _with_multipliers(trials, experiment)
    trials.insert(0, "experiment", experiment.name)
    for metric, (side, _) in MI_BOUNDS.items():
        if metric in trials:
            trials[BOUND_PREFIX + metric] = side
    return Results(str(location), directory, experiment, trials)


def load(*locations: str | Path) -> pd.DataFrame:
    """One tidy row per trial of one or several experiments (path or URI each); the column
    `experiment` says which (its name; `name#2` when two share one)."""
    frames = [r.trials for r in load_many(locations)]
    return pd.concat(frames, ignore_index=True, sort=False)


def load_many(locations: Sequence[str | Path]) -> list[Results]:
    """`load_results` of each, experiment names made unique (`name#2`, ...)."""
    if not locations:
        raise ResultsError("give at least one experiment directory")
    loaded, seen = [], {}
    for location in locations:
        results = load_results(location)
        count = seen[results.name] = seen.get(results.name, 0) + 1
        if count > 1:
            results.trials["experiment"] = f"{results.name}#{count}"
        loaded.append(results)
    return loaded


def load_curves(*locations: str | Path) -> pd.DataFrame:
    """Metrics over training: one row per evaluation of each trial (`experiment`, `trial_id`,
    `step`, `status`, then every metric reported), read from Tune's `trial_*/result.json`.
    These files lag a little behind training while a search runs; a step reported twice (a
    trial resumed from an earlier checkpoint) keeps its last report."""
    rows = []
    for results in load_many(locations):
        label = str(results.trials["experiment"].iloc[0])
        for trial_id, path in result_files(results.directory):
            for member in _members(read_results(path)):
                record = member.metrics
                if "step" not in record:
                    continue
                key = member_key(trial_id, member.index)
                row = {"experiment": label, "trial_id": key, "step": record["step"]}
                row["status"] = member.status
                row |= {m: record[m] for m in METRIC_COLUMNS if m in record}
                rows.append(row)
    columns = ["experiment", "trial_id", "step", "status"]
    curves = pd.DataFrame(rows, columns=None if rows else columns)
    curves = curves.drop_duplicates(["experiment", "trial_id", "step"], keep="last")
    for metric in METRIC_COLUMNS:
        if metric in curves:
            curves[metric] = pd.to_numeric(curves[metric], errors="coerce")
    return curves.sort_values(["experiment", "trial_id", "step"], ignore_index=True)


def _unfinished_rows(directory: Path, recorded: set[str]) -> list[dict[str, Any]]:
    """Trials with evaluations on disk and no row in trials.csv: their latest evaluation."""
    rows = []
    for trial_id, path in result_files(directory):
        records = read_results(path)[-1:]
        points = records[0].get("config", {}).get(MEMBERS) if records else None
        for member in _members(records):
            key, last = member_key(trial_id, member.index), member.metrics
            if key in recorded:
                continue
            config = last.get("config", {}) if member.index is None else point_of(last)
            if points is not None and member.index is not None:
                config = points[member.index]
            row = {"trial_id": key, "status": UNFINISHED, **config}
            row |= {k: last.get(k) for k in (*METRIC_COLUMNS, "mi_cap", "step") if k in last}
            row["ended_at"] = last.get("timestamp")
            rows.append(row)
    return rows


def _members(records: Sequence[Mapping[str, Any]]) -> list[Member]:
    """Tune's results as members: a population trial's result holds one per member."""
    return [member for record in records for member in decode(record)]


def family_of(experiment: Experiment) -> str:
    """The searched family (space.family), else the preset's name, else `lagrangian`."""
    family = experiment.space.get("family") if isinstance(experiment.space, Mapping) else None
    family = family or experiment.objective.preset or "lagrangian"
    return FAMILY_ALIASES.get(str(family), str(family))


def _with_multipliers(trials: pd.DataFrame, experiment: Experiment) -> pd.DataFrame:
    """`family`, `alpha1`, `alpha2` and `lambda:<term>` per trial: the compiled Lagrangian of
    the experiment at the trial's searched values (NaN where those do not compile)."""
    keys = searched_keys(trials)
    cache: dict[tuple, dict[str, float]] = {}
    rows = []
    for values in trials[keys].itertuples(index=False, name=None):
        point = tuple((k, float(v)) for k, v in zip(keys, values, strict=True) if pd.notna(v))
        if point not in cache:
            cache[point] = _multipliers(experiment, dict(point))
        rows.append(cache[point])
    extra = pd.DataFrame(rows, index=trials.index)
    extra.insert(0, "family", family_of(experiment))
    position = list(trials.columns).index("status") + 1 if "status" in trials else 0
    return pd.concat([trials.iloc[:, :position], extra, trials.iloc[:, position:]], axis=1)


def _multipliers(experiment: Experiment, values: dict[str, float]) -> dict[str, float]:
    try:
        lagrangian = experiment.with_values(values).compiled.lagrangian
    except ConfigError:  # a refused point: no Lagrangian
        return {"alpha1": float("nan"), "alpha2": float("nan")}
    row = {"alpha1": float(lagrangian.alpha1), "alpha2": float(lagrangian.alpha2)}
    row |= {LAMBDA_PREFIX + term: float(w) for term, w in lagrangian.lambdas.items()}
    return row
