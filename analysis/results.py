"""Read an experiment directory (`<storage>/<name>/`) into a DataFrame.

The search writes `experiment.yaml` (the experiment as run) and `trials.csv` (one row per
trial: `trial_id`, `status`, one column per searched dotted key, every metric of DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from search.config import METRICS, Experiment, load_experiment

TOP_LEVEL_KEYS = ("dataset", "model", "objective", "train", "resources", "seed")


class ResultsError(ValueError):
    """An experiment directory that is missing or holds no usable results."""


@dataclass(frozen=True)
class Results:
    directory: Path
    experiment: Experiment
    trials: pd.DataFrame  # one row per trial

    @property
    def searched(self) -> list[str]:
        """The dotted experiment keys the search varied (columns of `trials`)."""
        return [c for c in self.trials.columns if c.split(".")[0] in TOP_LEVEL_KEYS and "." in c]

    @property
    def objectives(self) -> tuple[list[str], list[str]]:
        """(metrics, modes) the search optimised: NLL and which bound on I_q."""
        metrics, modes = list(self.experiment.search.metrics), list(self.experiment.search.modes)
        if "mi_bound" in self.trials.columns and "mi" in metrics:
            bound = str(self.trials["mi_bound"].dropna().iloc[0]) if len(self.trials) else "mi"
            metrics = [bound if m == "mi" else m for m in metrics]
        return metrics, modes

    @property
    def finished(self) -> pd.DataFrame:
        """Trials that finished with finite metrics (not diverged or errored)."""
        ok = self.trials["status"].astype(str).eq("ok") if "status" in self.trials else True
        return self.trials[ok & self.trials["nll"].notna()]


def load_results(directory: str | Path) -> Results:
    directory = Path(directory)
    csv, config = directory / "trials.csv", directory / "experiment.yaml"
    for path in (csv, config):
        if not path.is_file():
            raise ResultsError(f"{path}: not found; is {directory} an experiment directory?")
    trials = pd.read_csv(csv)
    if trials.empty:
        raise ResultsError(f"{csv}: no trials recorded yet")
    for metric in METRICS:
        if metric in trials:
            trials[metric] = pd.to_numeric(trials[metric], errors="coerce")
    return Results(directory, load_experiment(config), trials)


def mi_label(metric: str, experiment: Experiment, trials: pd.DataFrame) -> str:
    """Axis label that says which estimate of I_q(x;z) a column holds."""
    if metric == "rate":
        return "rate = E KL(q(z|x)||p(z)), upper bound on I_q (nats)"
    if metric == "mi":
        cap = trials["mi_cap"].max() if "mi_cap" in trials else float("nan")
        return f"mi: I_q(x;z), aggregate posterior, capped at log N = {cap:.3f} (nats)"
    return f"{metric} (nats)" if metric != "active_units" else metric
