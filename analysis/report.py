"""An HTML dashboard of a search: the Pareto front of NLL against I_q, and each multiplier.

Plotly figures in one self-contained HTML file (plotly.js embedded once, so it opens on a
cluster without internet).
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.pareto import pareto_front
from analysis.results import Results, load_results, mi_label


def pareto_figure(results: Results) -> go.Figure:
    """All finished trials, NLL against the information metric, the front drawn through."""
    (x, y), modes = results.objectives[0][:2], results.objectives[1][:2]
    done = results.finished
    front = pareto_front(done, [x, y], modes) if len(done) else done
    hover = [
        "<br>".join(f"{k} = {row[k]:.4g}" for k in results.searched if pd.notna(row[k]))
        for _, row in done.iterrows()
    ]
    figure = go.Figure()
    figure.add_scatter(
        x=done[x],
        y=done[y],
        mode="markers",
        name="trials",
        text=hover,
        marker={"size": 9, "color": "#9aa5b1"},
    )
    figure.add_scatter(
        x=front[x],
        y=front[y],
        mode="lines+markers",
        name="Pareto front",
        marker={"size": 11, "color": "#d1495b"},
        line={"shape": "hv"},
        text=[f"trial {t}" for t in front.get("trial_id", front.index)],
    )
    if y == "mi" and "mi_cap" in done and len(done):
        figure.add_hline(
            y=float(done["mi_cap"].max()),
            line_dash="dot",
            annotation_text="log N: the estimator's ceiling",
        )
    figure.update_layout(
        title=f"{results.experiment.name}: {x} ({modes[0]}) vs {y} ({modes[1]})",
        xaxis_title=mi_label(x, results.experiment, done),
        yaxis_title=mi_label(y, results.experiment, done),
        template="plotly_white",
    )
    return figure


def multiplier_figure(results: Results, metric: str = "nll") -> go.Figure | None:
    """One panel per searched key: its value against `metric`, log axes for log ranges."""
    keys = results.searched
    if not keys:
        return None
    done = results.finished
    figure = make_subplots(rows=1, cols=len(keys), shared_yaxes=True, subplot_titles=keys)
    for i, key in enumerate(keys, start=1):
        figure.add_scatter(
            x=done[key],
            y=done[metric],
            mode="markers",
            row=1,
            col=i,
            showlegend=False,
            marker={"color": "#00798c"},
        )
        positive = bool(len(done)) and bool((done[key] > 0).all())
        spread = positive and done[key].max() / done[key].min() > 50
        figure.update_xaxes(type="log" if spread else "linear", row=1, col=i)
    figure.update_yaxes(title_text=metric, row=1, col=1)
    figure.update_layout(title=f"{metric} against each searched value", template="plotly_white")
    return figure


def front_table(results: Results) -> pd.DataFrame:
    metrics, modes = results.objectives
    columns = ["trial_id", *results.searched, "nll", "elbo", "rate", "mi", "active_units"]
    front = pareto_front(results.finished, metrics, modes)
    return front[[c for c in dict.fromkeys(columns) if c in front]]


def write_report(directory: str | Path, out: str | Path | None = None) -> Path:
    """Write `report.html` into the experiment directory (or `out`) and return its path."""
    results = load_results(directory)
    out = Path(out) if out else results.directory / "report.html"
    counts = results.trials["status"].value_counts().to_dict() if "status" in results.trials else {}
    figures = [f for f in (pareto_figure(results), multiplier_figure(results)) if f is not None]
    parts = [
        f"<h1>{html.escape(results.experiment.name)}</h1>",
        "<p>Trials: " + ", ".join(f"{v} {html.escape(str(k))}" for k, v in counts.items()) + "</p>",
    ]
    for i, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("<h2>Pareto set</h2>")
    parts.append(front_table(results).to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    parts.append(
        "<p>Export a trial as an experiment file that re-trains as it is: "
        f"<code>python run_search.py export {html.escape(str(results.directory))} "
        "--trial TRIAL_ID</code></p>"
    )
    body = "\n".join(parts)
    out.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>"
        f"{html.escape(results.experiment.name)}</title></head><body>{body}</body></html>"
    )
    return out
