"""Plotly figures of training and of one multiplier against NLL: the paper's two views.

- `curves_figure`: the MI estimates and `nll` against training steps, one line per trial
  (the paper's Figure 1 view: does information rise or collapse while NLL falls?). The MI
  panel draws the search's MI objective solid and, where recorded, the leave-one-out upper
  bound `mi_upper` dotted in the same colour: the true I_q lies between them.
- `beta_figure`: `nll` against β with one line per λ, the training set (`nll_train`) beside
  the test set (the paper's Figure 2 view: does the extra multiplier buy NLL at a given β?).
  The λ of a line is the multiplier that is free of β (MMD(q(z)||p(z)) for InfoVAE, not the
  KL(q(z)||p(z)) weight that β sets); a trial whose Lagrangian lacks that term (the β-ELBO
  beside InfoVAE) is the line λ = 0. λ values are grouped into at most `LAMBDA_GROUPS`
  log-spaced bands when the search sampled them continuously.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.labels import COLORS, axis_label
from analysis.results import LAMBDA_PREFIX, Results, searched_keys

BETA_KEY = "objective.params.beta"
LAMBDA_GROUPS = 5


def run_labels(trials: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(experiment, trial_id) -> the trial's searched values, e.g. "beta=0.5 mi_upper_bound=2"."""
    keys = searched_keys(trials)
    labels = {}
    for _, row in trials.iterrows():
        values = [f"{k.rsplit('.', 1)[-1]}={row[k]:.4g}" for k in keys if pd.notna(row[k])]
        labels[(str(row["experiment"]), str(row["trial_id"]))] = " ".join(values)
    return labels


def curves_figure(runs: Sequence[Results], curves: pd.DataFrame) -> go.Figure | None:
    """Two panels (the MI estimates, nll) against step; one line per trial, one colour per run
    (per trial when there is one run), named by the trial's searched values."""
    mi = runs[0].mi_metric
    panels = [m for m in (mi, "nll") if m and m in curves]
    if curves.empty or not panels:
        return None
    upper = "mi_upper" if mi == "mi" and "mi_upper" in curves else ""
    titles = [f"{m} (solid) and {upper} (dotted)" if m == mi and upper else m for m in panels]
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=titles)
    labels = run_labels(pd.concat([r.trials for r in runs]))
    experiments = list(dict.fromkeys(curves["experiment"]))
    for i, ((experiment, trial_id), trial) in enumerate(
        curves.groupby(["experiment", "trial_id"], sort=False)
    ):
        index = experiments.index(experiment) if len(experiments) > 1 else i
        color = COLORS[index % len(COLORS)]
        name = f"{trial_id} {labels.get((experiment, trial_id), '')}".strip()
        name = name if len(experiments) == 1 else f"{experiment} {name}"
        for col, metric in enumerate(panels, start=1):
            lines = [(metric, "solid")] + ([(upper, "dot")] if metric == mi and upper else [])
            for shown, dash in lines:
                figure.add_scatter(
                    x=trial["step"],
                    y=trial[shown],
                    mode="lines",
                    name=name if dash == "solid" else f"{name} ({shown})",
                    legendgroup=f"{experiment}/{trial_id}",
                    showlegend=col == 1 and dash == "solid",
                    line={"color": color, "width": 1.5, "dash": dash},
                    row=1,
                    col=col,
                )
    trials = pd.concat([r.trials for r in runs])
    for col, metric in enumerate(panels, start=1):
        figure.update_xaxes(title_text="training step", row=1, col=col)
        figure.update_yaxes(title_text=axis_label(metric, trials), row=1, col=col)
    figure.update_layout(
        title="Training curves, one line per trial", template="plotly_white", height=450
    )
    return figure


def free_lambda(done: pd.DataFrame) -> str | None:
    """The λ column not set by β: more than one value (an absent term counts as 0) and not an
    exact affine function of β (the β-ELBO's KL(q(z)||p(z)) weight is β itself)."""
    beta = done[BETA_KEY].to_numpy(dtype=float)
    for column in [c for c in done.columns if c.startswith(LAMBDA_PREFIX)]:
        values = done[column].fillna(0.0).to_numpy(dtype=float)
        if len(np.unique(values)) < 2:
            continue
        if len(np.unique(beta)) >= 2:
            fit = np.polyval(np.polyfit(beta, values, 1), beta)
            if np.allclose(fit, values, rtol=1e-9, atol=1e-9):
                continue
        return column
    return None


def beta_figure(runs: Sequence[Results], metric: str = "nll") -> go.Figure | None:
    """`metric` (and `nll_train` beside `nll`) against β, one line per λ (band); None when
    no run searched β."""
    done = pd.concat([r.finished for r in runs], ignore_index=True)
    if BETA_KEY not in done or done[BETA_KEY].notna().sum() < 2:
        return None
    done = done[done[BETA_KEY].notna()]
    column = free_lambda(done)
    order = done[column].fillna(0.0) if column is not None else pd.Series(0.0, done.index)
    keys = [lambda_groups(order)] if column is not None else ["experiment"]
    metrics = [m for m in ("nll_train", metric) if m in done and done[m].notna().any()]
    metrics = metrics if metric == "nll" else [metric]
    titles = [f"{'train' if m == 'nll_train' else 'test'}: {m}" for m in metrics]
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=titles, shared_yaxes=True)
    parts = sorted(done.groupby(keys, sort=True), key=lambda item: order[item[1].index].min())
    for i, (group, part) in enumerate(parts):  # lines in increasing λ
        part = part.sort_values(BETA_KEY)
        label = group[0] if isinstance(group, tuple) else group
        for col, shown in enumerate(metrics, start=1):
            figure.add_scatter(
                x=part[BETA_KEY],
                y=part[shown],
                mode="lines+markers",
                name=str(label or "all trials"),
                legendgroup=str(label),
                showlegend=col == 1,
                text=(part["experiment"] + " trial " + part["trial_id"].astype(str)).tolist(),
                line={"color": COLORS[i % len(COLORS)]},
                row=1,
                col=col,
            )
        figure.update_xaxes(title_text="β")
    term = column[len(LAMBDA_PREFIX) :] if column else ""
    figure.update_yaxes(title_text=axis_label(metrics[0]), row=1, col=1)
    figure.update_layout(
        title=f"{metric} against β" + (f", one line per λ of {term}" if term else ""),
        template="plotly_white",
        height=450,
    )
    return figure


def lambda_groups(values: pd.Series) -> pd.Series:
    """A label per row: the λ itself when few distinct values (a grid), else its log band;
    λ = 0 (the term absent) keeps its own line."""
    distinct = np.unique(values.dropna())
    positive = distinct[distinct > 0]
    if len(distinct) <= LAMBDA_GROUPS or len(positive) < 2:
        return values.map(lambda v: f"λ = {v:.4g}")
    edges = np.geomspace(positive.min(), positive.max(), LAMBDA_GROUPS + 1)
    bands = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, LAMBDA_GROUPS - 1)
    labels = [f"λ in [{edges[b]:.3g}, {edges[b + 1]:.3g}]" for b in range(LAMBDA_GROUPS)]
    named = [labels[b] for b in bands]
    return pd.Series(np.where(values.to_numpy() == 0, "λ = 0", named), index=values.index)
