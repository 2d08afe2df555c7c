"""Export trials as experiment files that `run_search.py train` re-trains as they are."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from analysis.pareto import pareto_front
from analysis.results import Results, ResultsError, load_results
from search.config import Experiment


def trial_experiment(results: Results, trial_id: str) -> Experiment:
    """The experiment as that trial ran it: the base file with the trial's searched values."""
    rows = results.trials[results.trials["trial_id"].astype(str) == str(trial_id)]
    if rows.empty:
        known = ", ".join(results.trials["trial_id"].astype(str).head(20))
        raise ResultsError(f"no trial {trial_id!r} in {results.directory}; trials: {known}")
    row = rows.iloc[0]
    values = {k: _plain(row[k]) for k in results.searched if pd.notna(row[k])}
    name = f"{results.experiment.name}-{trial_id}"
    return results.experiment.with_values({**values, "name": name, "space": {}})


def export_trials(
    directory: str | Path, trial_ids: list[str] | None = None, out_dir: str | Path | None = None
) -> list[Path]:
    """Write one YAML per trial (default: the Pareto set) and return their paths."""
    results = load_results(directory)
    if not trial_ids:
        metrics, modes = results.objectives
        trial_ids = [str(t) for t in pareto_front(results.finished, metrics, modes)["trial_id"]]
        if not trial_ids:
            raise ResultsError(f"{directory}: no finished trial to export")
    out_dir = Path(out_dir) if out_dir else results.directory / "exports"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for trial_id in trial_ids:
        experiment = trial_experiment(results, trial_id)
        path = out_dir / f"{experiment.name}.yaml"
        path.write_text(yaml.safe_dump(experiment.to_dict(), sort_keys=False))
        paths.append(path)
    return paths


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value
