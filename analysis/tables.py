"""The paper's findings as tables, computed from finished searches (no training here).

- `figure1_table` (Section 4.1, Figure 1): per run, the final numbers and the shape of its
  curves: how far NLL rose above its first evaluation while MI moved, where MI stopped
  growing, how much NLL recovered, and whether a variance floor bound at any evaluation.
- `figure2_table` (Section 4.2, Figure 2): per β, NLL (test and train) at λ = 0 (the β-ELBO)
  and at each λ > 0, and whether some λ > 0 gave a lower NLL.
- `methods_table` / `methods_summary` (beyond the paper): the same budget spent by several
  samplers over several seeds: best NLL, hypervolume of the NLL-MI front against one
  reference point for all, and the trials each needed to reach the grid's best NLL.
`markdown` renders any of them for docs/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.figures_training import BETA_KEY, free_lambda, run_labels
from analysis.pareto import hypervolume, reference_point, usable_mask
from analysis.results import LAMBDA_PREFIX

FINAL = ("nll", "nll_train", "mi", "mi_upper", "rate", "distortion", "floor_units")


def figure1_table(trials: pd.DataFrame, curves: pd.DataFrame, mi: str = "mi") -> pd.DataFrame:
    """One row per run: the final metrics, `nll_first` (first evaluation), `nll_peak` and its
    step after that, `nll_min_after_peak`, `mi_max` and `mi_plateau_step` (the first step with
    MI within 5 % of its maximum), and `floor_units_max` over all evaluations."""
    labels = run_labels(trials)
    rows = []
    for (experiment, trial_id), curve in curves.groupby(["experiment", "trial_id"], sort=False):
        curve = curve.sort_values("step")
        last = curve.iloc[-1]
        nll, steps = curve["nll"].to_numpy(float), curve["step"].to_numpy(int)
        peak = int(np.nanargmax(nll))
        information = curve[mi].to_numpy(float)
        top = np.nanmax(information)
        plateau = steps[np.argmax(information >= top - 0.05 * abs(top))]
        row = {"run": labels.get((experiment, trial_id), trial_id), "trial_id": trial_id}
        row |= {"steps": int(last["step"]), **{m: last.get(m, np.nan) for m in FINAL}}
        row |= {
            "nll_first": nll[0],
            "nll_peak": nll[peak],
            "nll_peak_step": int(steps[peak]),
            "nll_min_after_peak": np.nanmin(nll[peak:]),
            f"{mi}_max": top,
            f"{mi}_plateau_step": int(plateau),
            "floor_units_max": curve["floor_units"].max() if "floor_units" in curve else np.nan,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def figure2_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per β: `nll@λ=v` and `nll_train@λ=v` for every λ (0: the β-ELBO), the best
    λ > 0 on the test set and whether it beat λ = 0 (test and train)."""
    done = trials[usable_mask(trials, ["nll"]) & trials[BETA_KEY].notna()].copy()
    column = free_lambda(done)
    done["lambda"] = done[column].fillna(0.0) if column else 0.0
    rows = []
    for beta, part in done.groupby(BETA_KEY):
        row: dict[str, object] = {"beta": beta}
        by_lambda = part.groupby("lambda")[["nll", "nll_train"]].min()
        for value, numbers in by_lambda.iterrows():
            row[f"nll@λ={value:g}"] = numbers["nll"]
            row[f"nll_train@λ={value:g}"] = numbers["nll_train"]
        positive = by_lambda[by_lambda.index > 0]
        if 0.0 in by_lambda.index and not positive.empty:
            base = by_lambda.loc[0.0]
            row["best λ>0 (test)"] = positive["nll"].idxmin()
            row["λ>0 lower (test)"] = bool(positive["nll"].min() < base["nll"])
            row["λ>0 lower (train)"] = bool(positive["nll_train"].min() < base["nll_train"])
        rows.append(row)
    return pd.DataFrame(rows)


def methods_table(
    runs: Sequence[tuple[Mapping[str, object], pd.DataFrame]],
    metrics: Sequence[str] = ("nll", "mi"),
    modes: Sequence[str] = ("min", "max"),
    method: str = "search.sampler",
    baseline: str = "grid",
) -> pd.DataFrame:
    """One row per search: its varied values (`method`, `seed`), trials, `best_nll`, the
    `hypervolume` of its front (reference: `analysis.pareto.reference_point` over every
    search's finished trials) and `trials_to_grid_best`: trials, in finishing order, until
    its best NLL was at most the `baseline` search's best of the same seed (NaN: never)."""
    pooled = pd.concat([t[usable_mask(t, metrics)] for _, t in runs])
    reference = reference_point(pooled[list(metrics)].to_numpy(float), modes)
    rows = []
    for values, trials in runs:
        order = trials.sort_values("ended_at", kind="stable") if "ended_at" in trials else trials
        usable = usable_mask(order, metrics)
        nll = order["nll"].where(usable).to_numpy(float)
        points = order.loc[usable, list(metrics)].to_numpy(float)
        row = {k.rsplit(".", 1)[-1]: v for k, v in values.items()}
        row |= {
            "trials": len(order),
            "ok": int(usable.sum()),
            "best_nll": np.nanmin(nll) if usable.any() else np.nan,
            "hypervolume": hypervolume(points, modes, reference) if len(points) else 0.0,
            "_running_best": np.fmin.accumulate(np.nan_to_num(nll, nan=np.inf)),
        }
        rows.append(row)
    table = pd.DataFrame(rows)
    short = method.rsplit(".", 1)[-1]
    group = [c for c in table.columns if c not in (short, "trials", "ok") and c[0] != "_"]
    group = [c for c in group if c not in ("best_nll", "hypervolume")]
    grid_best = table[table[short] == baseline].set_index(group)["best_nll"] if group else None
    reached = []
    for _, row in table.iterrows():
        target = grid_best.get(tuple(row[g] for g in group) if len(group) > 1 else row[group[0]])
        hits = np.nonzero(row["_running_best"] <= target + 1e-12)[0] if target is not None else []
        reached.append(float(hits[0] + 1) if len(hits) else np.nan)
    table["trials_to_grid_best"] = reached
    table.attrs["reference"] = reference.tolist()
    return table.drop(columns="_running_best")


def methods_summary(table: pd.DataFrame, method: str = "sampler") -> pd.DataFrame:
    """Per method: mean and standard deviation over seeds of best NLL and hypervolume, the
    mean trials to reach the grid's best and in how many seeds it was reached."""
    grouped = table.groupby(method, sort=False)
    summary = pd.DataFrame(
        {
            "searches": grouped.size(),
            "best_nll_mean": grouped["best_nll"].mean(),
            "best_nll_std": grouped["best_nll"].std(ddof=1),
            "hypervolume_mean": grouped["hypervolume"].mean(),
            "hypervolume_std": grouped["hypervolume"].std(ddof=1),
            "trials_to_grid_best_mean": grouped["trials_to_grid_best"].mean(),
            "reached_grid_best": grouped["trials_to_grid_best"].count(),
        }
    )
    return summary.reset_index()


def markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table; floats to `digits` significant digits, NaN as "–"."""

    def cell(value: object) -> str:
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        if isinstance(value, float | np.floating):
            return "–" if np.isnan(value) else f"{value:.{digits}g}"
        return str(value)

    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])


__all__ = [
    "LAMBDA_PREFIX",
    "figure1_table",
    "figure2_table",
    "markdown",
    "methods_summary",
    "methods_table",
]
