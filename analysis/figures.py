"""Plotly figures of the fronts: Pareto front with the MI sandwich, the rate-distortion plane,
parallel coordinates, hypervolume against trials. Each takes one or several experiments
(`compare` overlays them, one colour each) and returns a `go.Figure` (None when the results
hold nothing to draw)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.labels import COLORS, axis_label, hover_text, multiplier_columns, sandwich_columns
from analysis.pareto import hypervolume_history, pareto_front, reference_point
from analysis.results import LAMBDA_PREFIX, Results
from experiment.status import UNFINISHED

PARETO_DIV = "pareto"  # the Pareto plot's element id in the dashboard (tests count its points)


def front_axes(results: Results) -> tuple[list[str], list[str]]:
    """The metrics fronts are taken over: the search's objectives (2 or 3)."""
    metrics, modes = results.objectives
    if len(metrics) == 1:  # a single-objective search: its front against the MI estimate
        mi = results.mi_metric or "rate"
        metrics, modes = [metrics[0], mi], [modes[0], "max"]
    return metrics, modes


def common_reference(runs: Sequence[Results]) -> np.ndarray | None:
    """One reference point for every run (so their hypervolumes compare): see
    `analysis.pareto.reference_point`, over the finished trials of all of them."""
    metrics, modes = front_axes(runs[0])
    values = pd.concat([r.finished[metrics] for r in runs]).to_numpy(dtype=float)
    values = values[np.isfinite(values).all(axis=1)]
    return reference_point(values, modes) if len(values) else None


def pareto_figure(runs: Sequence[Results]) -> go.Figure:
    """Every finished trial once (front points red, the rest grey; one colour per run when
    several), the front as a staircase, and the MI sandwich as a bar per point."""
    metrics, modes = front_axes(runs[0])
    x, y = metrics[0], metrics[1]
    figure = go.Figure()
    for i, run in enumerate(runs):
        done = run.finished
        name = str(done["experiment"].iloc[0]) if len(done) else run.name
        front = pareto_front(done, metrics, modes)
        rest = done.drop(front.index)
        front_color = COLORS[i % len(COLORS)]
        rest_color = "#9aa5b1" if len(runs) == 1 else front_color
        prefix = f"{name}: " if len(runs) > 1 else ""
        _sandwich(figure, done, x, y, front_color, prefix)
        for part, label, color, size in (
            (rest, "dominated", rest_color, 8),
            (front, "Pareto front", front_color, 11),
        ):
            figure.add_scatter(
                x=part[x],
                y=part[y],
                mode="markers",
                name=prefix + label,
                text=hover_text(part, metrics),
                hoverinfo="text",
                marker={"size": size, "color": color, "opacity": 0.55 if size == 8 else 1},
            )
        staircase = front.sort_values(x)
        figure.add_scatter(
            x=staircase[x],
            y=staircase[y],
            mode="lines",
            line={"shape": "hv", "color": front_color},
            name=prefix + "front",
            hoverinfo="skip",
            showlegend=False,
        )
    trials = pd.concat([r.trials for r in runs])
    figure.update_layout(
        title=f"Pareto front: {x} ({modes[0]}) against {y} ({modes[1]})",
        xaxis_title=axis_label(x, trials),
        yaxis_title=axis_label(y, trials),
        template="plotly_white",
    )
    return figure


def _sandwich(figure: go.Figure, done: pd.DataFrame, x: str, y: str, color: str, prefix: str):
    """Vertical segments from the best MI lower bound to the tightest upper bound."""
    lower, upper = sandwich_columns(done)
    if not lower or not upper or y not in (*lower, *upper):
        return
    low, high = done[lower].max(axis=1), done[upper].min(axis=1)
    both = low.notna() & high.notna()
    xs, ys = [], []
    for at, a, b in zip(done.loc[both, x], low[both], high[both], strict=True):
        xs += [at, at, None]
        ys += [a, b, None]
    if xs:
        figure.add_scatter(
            x=xs,
            y=ys,
            mode="lines",
            line={"color": color, "width": 1},
            opacity=0.5,
            name=prefix + f"I_q sandwich [{'/'.join(lower)}, {'/'.join(upper)}]",
            hoverinfo="skip",
        )


def rate_distortion_figure(runs: Sequence[Results]) -> go.Figure | None:
    """Rate against distortion (Alemi et al. 2018, "Fixing a Broken ELBO"), with lines of
    constant ELBO (R + D = -ELBO) and, where H(x) is known (mi_ba), the bound D >= H - R."""
    if not all({"rate", "distortion"} <= set(r.trials.columns) for r in runs):
        return None
    figure = go.Figure()
    done = pd.concat([r.finished for r in runs])
    done = done[done["rate"].notna() & done["distortion"].notna()]
    if done.empty:
        return None
    top = float(max(done["rate"].max(), 0.1)) * 1.1
    for level in sorted(
        set(np.round(np.quantile(done["rate"] + done["distortion"], [0, 0.5, 1]), 4))
    ):
        figure.add_scatter(
            x=[0, top],
            y=[level, level - top],
            mode="lines",
            line={"dash": "dot", "color": "#bbbbbb", "width": 1},
            name=f"ELBO = {-level:.4g}",
            hoverinfo="name",
        )
    if "mi_ba" in done and done["mi_ba"].notna().any():
        entropy = float((done["mi_ba"] + done["distortion"]).median())  # H(x) = I_BA + D
        figure.add_scatter(
            x=[0, top],
            y=[entropy, entropy - top],  # D < 0 is possible for densities: the line goes on
            mode="lines",
            line={"color": "#333333", "width": 1},
            name=f"D = H(x) - R (H = {entropy:.4g})",
        )
    for i, run in enumerate(runs):
        part = run.finished
        figure.add_scatter(
            x=part["rate"],
            y=part["distortion"],
            mode="markers",
            name=str(part["experiment"].iloc[0]) if len(part) else run.name,
            text=hover_text(part, ["nll", "elbo", "rate", "distortion"]),
            hoverinfo="text",
            marker={"size": 9, "color": COLORS[i % len(COLORS)]},
        )
    figure.update_layout(
        title="Rate-distortion plane (dotted: constant ELBO)",
        xaxis_title=axis_label("rate"),
        yaxis_title=axis_label("distortion"),
        template="plotly_white",
    )
    figure.update_xaxes(rangemode="tozero")
    return figure


def parallel_figure(runs: Sequence[Results]) -> go.Figure | None:
    """One line per finished trial across α1, α2, log10 λ, other searched keys and metrics."""
    done = pd.concat([r.finished for r in runs])
    if done.empty:
        return None
    metrics, _ = front_axes(runs[0])
    columns = [c for c in multiplier_columns(done) if done[c].nunique() > 1]
    extra = [m for m in ("nll", "rate", "distortion") if m in done and m not in metrics]
    dimensions = []
    for column in [*columns, *metrics, *extra]:
        values = done[column].astype(float)
        label = column
        if column.startswith(LAMBDA_PREFIX) and (values > 0).all():
            values, label = np.log10(values), "log10 λ " + column[len(LAMBDA_PREFIX) :]
        dimensions.append({"label": label, "values": values})
    color = done[metrics[0]].astype(float)
    figure = go.Figure(
        go.Parcoords(
            line={"color": color, "colorscale": "Viridis", "showscale": True},
            dimensions=dimensions,
        )
    )
    figure.update_layout(title=f"Multipliers against the metrics (colour: {metrics[0]})")
    return figure


def hypervolume_figure(runs: Sequence[Results], reference: np.ndarray | None) -> go.Figure | None:
    """Hypervolume of the finished `ok` trials after each finished trial, one line per run."""
    metrics, modes = front_axes(runs[0])
    if reference is None or len(metrics) > 3:
        return None
    figure = go.Figure()
    for i, run in enumerate(runs):
        history = hypervolume_history(finishing_order(run.trials), metrics, modes, reference)
        figure.add_scatter(
            x=history["trials"],
            y=history["hypervolume"],
            mode="lines+markers",
            name=str(run.trials["experiment"].iloc[0]),
            text=[f"after trial {t}" for t in history["trial_id"]],
            line={"shape": "hv", "color": COLORS[i % len(COLORS)]},
        )
    point = ", ".join(f"{m} = {v:.4g}" for m, v in zip(metrics, reference, strict=True))
    figure.update_layout(
        title=f"Hypervolume over ({', '.join(metrics)}) against finished trials",
        xaxis_title="finished trials (any status)",
        yaxis_title=f"hypervolume (reference point {point})",
        template="plotly_white",
    )
    return figure


def finishing_order(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials (unfinished ones left out) in the order they finished."""
    done = trials[trials["status"].astype(str) != UNFINISHED]
    if "ended_at" in done:
        done = done.sort_values("ended_at", kind="stable", na_position="last")
    return done
