"""A replicate as a picture, written by `python -m analysis.replicate` as
`<replicate>/<table>.html`, and as a PNG beside it when a browser engine is present.

- figure2: NLL against λ, one line per group and β, test and train side by side, each point
  the mean over finished seeds with its standard error as a bar. λ = 0 is the baseline
  group's point at the same β (the β-ELBO), so λ is a category axis (0, 5, 158, 5000), not a
  log axis that has no 0.
- figure1: the paper's Figure 1 panels, test NLL and MI against the training step, one line
  per run (a colour per group, a dash per seed), so NLL can be read where MI stops.
"""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.replicate_tables import mean_se

BETA, LAMBDA = "objective.params.beta", "objective.params.lambda"


def figure2_plot(rows: pd.DataFrame, groups: dict[str, dict[str, Any]]) -> go.Figure:
    """`rows`: `replicate_tables.run_rows` with unfinished runs' metrics NaN."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("test NLL", "train NLL"))
    palette = iter(
        itertools.cycle(plotly.colors.qualitative.Plotly)
    )  # one colour a line, both panels
    for name, entry in groups.items():
        base = entry.get("baseline")
        if base is None or LAMBDA not in (entry.get("grid") or {}):
            continue  # a line needs λ values to run along
        mine, theirs = rows[rows["group"] == name], rows[rows["group"] == base]
        for beta, part in mine.groupby(BETA, sort=True):
            lambdas = sorted(part[LAMBDA].dropna().unique())
            colour = next(palette)
            for column, metric in enumerate(("nll", "nll_train"), start=1):
                points = [mean_se(theirs[theirs[BETA] == beta][metric])]
                points += [mean_se(part[part[LAMBDA] == lam][metric]) for lam in lambdas]
                figure.add_trace(
                    go.Scatter(
                        x=["0", *(f"{lam:g}" for lam in lambdas)],
                        y=[m for m, _ in points],
                        error_y={"type": "data", "array": [s for _, s in points]},
                        mode="lines+markers",
                        line={"color": colour},
                        name=f"{name}, β = {beta:g}",
                        legendgroup=f"{name} {beta}",
                        showlegend=column == 1,
                    ),
                    row=1,
                    col=column,
                )
    figure.update_xaxes(title_text="λ (0: the β-ELBO)", type="category")
    figure.update_yaxes(title_text="nats")
    figure.update_layout(title="NLL against λ (mean ± SE over seeds)", width=1100, height=480)
    return figure


def figure1_plot(curves: list[tuple[str, int, pd.DataFrame]]) -> go.Figure:
    """`curves`: (group, seed, `replicate_tables.curve`) per run; runs without points skipped."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("test NLL", "MI (lower bound)"))
    colours: dict[str, str] = {}
    palette = itertools.cycle(plotly.colors.qualitative.Plotly)
    dashes = ("solid", "dash", "dot", "dashdot")
    for group, seed, points in curves:
        if points.empty:
            continue
        colour = colours.setdefault(group, next(palette))
        for column, metric in enumerate(("nll", "mi"), start=1):
            figure.add_trace(
                go.Scatter(
                    x=points["step"],
                    y=points[metric],
                    mode="lines",
                    line={"color": colour, "dash": dashes[seed % len(dashes)]},
                    name=f"{group}, seed {seed}",
                    legendgroup=f"{group} {seed}",
                    showlegend=column == 1,
                ),
                row=1,
                col=column,
            )
    figure.update_xaxes(title_text="training step")
    figure.update_yaxes(title_text="nats")
    figure.update_layout(
        title="Figure 1: NLL and MI against the step, per run", width=1100, height=480
    )
    return figure
