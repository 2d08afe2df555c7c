"""Plotly figures of training and of one multiplier against NLL: the paper's two views.

- `curves_figure`: the MI estimate and `nll` against training steps, one line per trial
  (the paper's Figure 1 view: does information rise or collapse while NLL falls?).
- `beta_figure`: `nll` against β with one line per λ (the paper's Figure 2 view: does the
  extra multiplier buy NLL at a given β?). λ values are grouped into at most `LAMBDA_GROUPS`
  log-spaced bands when the search sampled them continuously.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.labels import COLORS, axis_label
from analysis.results import LAMBDA_PREFIX, Results

BETA_KEY = "objective.params.beta"
LAMBDA_GROUPS = 5


def curves_figure(runs: Sequence[Results], curves: pd.DataFrame) -> go.Figure | None:
    """Two panels (the MI estimate, nll) against step; one line per trial, one colour per run
    (per trial when there is one run)."""
    mi = runs[0].mi_metric
    panels = [m for m in (mi, "nll") if m and m in curves]
    if curves.empty or not panels:
        return None
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=panels)
    experiments = list(dict.fromkeys(curves["experiment"]))
    for (experiment, trial_id), trial in curves.groupby(["experiment", "trial_id"], sort=False):
        index = experiments.index(experiment) if len(experiments) > 1 else len(figure.data)
        color = COLORS[index % len(COLORS)]
        for col, metric in enumerate(panels, start=1):
            figure.add_scatter(
                x=trial["step"],
                y=trial[metric],
                mode="lines",
                name=f"{trial_id}" if len(experiments) == 1 else f"{experiment} {trial_id}",
                legendgroup=f"{experiment}/{trial_id}",
                showlegend=col == 1,
                line={"color": color, "width": 1.5},
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


def beta_figure(runs: Sequence[Results], metric: str = "nll") -> go.Figure | None:
    """`metric` against β, one line per λ (band); None when no run searched β."""
    done = pd.concat([r.finished for r in runs])
    if BETA_KEY not in done or done[BETA_KEY].notna().sum() < 2:
        return None
    lambdas = [c for c in done.columns if c.startswith(LAMBDA_PREFIX) and done[c].nunique() > 1]
    groups = lambda_groups(done[lambdas[0]]) if lambdas else pd.Series("", index=done.index)
    figure = go.Figure()
    multiple = done["experiment"].nunique() > 1
    for i, ((experiment, group), part) in enumerate(done.groupby(["experiment", groups])):
        part = part.sort_values(BETA_KEY)
        label = f"{experiment} " if multiple else ""
        figure.add_scatter(
            x=part[BETA_KEY],
            y=part[metric],
            mode="lines+markers",
            name=label + (group or "all trials"),
            text=[f"trial {t}" for t in part["trial_id"]],
            line={"color": COLORS[i % len(COLORS)]},
        )
    term = lambdas[0][len(LAMBDA_PREFIX) :] if lambdas else ""
    figure.update_layout(
        title=f"{metric} against β" + (f", one line per λ of {term}" if term else ""),
        xaxis_title="β",
        yaxis_title=axis_label(metric),
        template="plotly_white",
    )
    return figure


def lambda_groups(values: pd.Series) -> pd.Series:
    """A label per row: the λ itself when few distinct values (a grid), else its log band."""
    distinct = np.unique(values.dropna())
    if len(distinct) <= LAMBDA_GROUPS:
        return values.map(lambda v: f"λ = {v:.4g}")
    edges = np.geomspace(distinct.min(), distinct.max(), LAMBDA_GROUPS + 1)
    bands = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, LAMBDA_GROUPS - 1)
    labels = [f"λ in [{edges[b]:.3g}, {edges[b + 1]:.3g}]" for b in range(LAMBDA_GROUPS)]
    return pd.Series([labels[b] for b in bands], index=values.index)
