"""What bench/search_quality.py prints and draws: tables of its runs, a JSON record, the figure.

The figure: per space, hypervolume against seconds (left) and against trained steps (right),
one line per method (the mean over seeds of its step curve) with the seeds' min-max shaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from quality_curves import Spread, band, time_to_reach
from quality_runs import Run

from analysis.labels import COLORS
from analysis.png import write_pngs

CHECKPOINTS = 8  # columns of the "hypervolume against x" tables
FIGURE_POINTS = 200  # where each mean curve is evaluated for the figure
AXES = {"seconds": "wall-clock seconds since the search started", "steps": "steps trained"}


def run_table(
    space: str,
    runs: dict[str, list[Run]],
    reference: np.ndarray,
    seconds: dict[str, dict[str, Spread]],
    steps: dict[str, dict[str, Spread]],
) -> str:
    """The text block of one space: per method its runs, its curves at a few x, its ratios."""
    if not runs:
        return f"== {space}: no method ran"
    first = next(iter(runs.values()))[0]
    bound = ", ".join(
        f"{m} {'<' if mode == 'min' else '>'} {v:.4g}"
        for m, mode, v in zip(first.metrics, first.modes, reference, strict=True)
    )
    parts = [f"== {space}: hypervolume of ({', '.join(first.metrics)}) inside {bound}"]
    summary = pd.DataFrame(
        {
            method: {
                "seeds": len(rs),
                "wall s": _mean(r.wall_s for r in rs),
                "steps": _mean(r.curves["steps"].end for r in rs),
                "final hv": _mean(r.curves["seconds"].final for r in rs),
                "s to own final": _mean(_own_final(r) for r in rs),
                **{k: _mean(r.summary()[k] for r in rs) for k in first.summary()},
            }
            for method, rs in runs.items()
        }
    ).T
    parts += ["runs (means over seeds):", summary.to_string(float_format=lambda v: f"{v:.4g}")]
    for x in AXES:
        parts += [f"hypervolume against {AXES[x]} (mean over seeds):", _curve_table(runs, x)]
    table = pd.DataFrame(
        {
            m: {**{k: v.text() for k, v in seconds[m].items()}}
            | {f"steps {k}": v.text() for k, v in steps[m].items()}
            for m in runs
        }
    ).T
    parts += [
        "ratios, mean [min-max] over seeds: reach = time (steps) to the reference's final "
        "hypervolume over the reference's own; hv@fT = hypervolume at f of the reference's "
        "wall time over the reference's final",
        table.to_string(),
    ]
    return "\n".join(parts)


def _own_final(run: Run) -> float:
    curve = run.curves["seconds"]
    return time_to_reach(curve, curve.final)


def _mean(values: Any) -> float:
    return float(np.mean(list(values)))


def _curve_table(runs: dict[str, list[Run]], x: str) -> str:
    end = max(r.curves[x].end for rs in runs.values() for r in rs)
    at = np.linspace(end / CHECKPOINTS, end, CHECKPOINTS)
    rows = {m: band([r.curves[x] for r in rs], at)[0] for m, rs in runs.items()}
    frame = pd.DataFrame(rows, index=[f"{a:.4g}" for a in at]).T
    return frame.to_string(float_format=lambda v: f"{v:.4g}")


def run_json(runs: list[Run], seconds: dict[str, Spread], steps: dict[str, Spread]) -> dict:
    return {
        "wall_s": [round(r.wall_s, 1) for r in runs],
        "final_hv": [round(r.curves["seconds"].final, 5) for r in runs],
        "steps": [int(r.curves["steps"].end) for r in runs],
        "to_own_final_s": [round(_own_final(r), 1) for r in runs],
        "summary": [r.summary() for r in runs],
        "seconds": {k: v.as_dict() for k, v in seconds.items()},
        "steps_reach": {k: v.as_dict() for k, v in steps.items()},
    }


def figure(scored: dict[str, dict[str, list[Run]]]) -> go.Figure:
    """Hypervolume against seconds and steps per space; one line per method, seeds shaded."""
    spaces = [s for s, runs in scored.items() if runs]
    titles = [f"{s}: against {x}" for s in spaces for x in AXES]
    fig = make_subplots(rows=max(1, len(spaces)), cols=len(AXES), subplot_titles=titles)
    methods = sorted({m for runs in scored.values() for m in runs})
    for row, space in enumerate(spaces, start=1):
        for col, x in enumerate(AXES, start=1):
            runs = scored[space]
            end = max(r.curves[x].end for rs in runs.values() for r in rs)
            grid = np.linspace(0.0, end, FIGURE_POINTS)
            for method, rs in runs.items():
                color = COLORS[methods.index(method) % len(COLORS)]
                mean, low, high = band([r.curves[x] for r in rs], grid)
                fig.add_scatter(
                    x=np.concatenate([grid, grid[::-1]]),
                    y=np.concatenate([high, low[::-1]]),
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=method,
                    row=row,
                    col=col,
                )
                fig.add_scatter(
                    x=grid,
                    y=mean,
                    name=f"{method} ({len(rs)} seeds)",
                    line={"color": color, "shape": "hv"},
                    legendgroup=method,
                    showlegend=row == 1 and col == 1,
                    row=row,
                    col=col,
                )
            fig.update_xaxes(title_text=AXES[x], row=row, col=col)
            fig.update_yaxes(title_text="hypervolume (nll, mi)", row=row, col=col)
    fig.update_layout(
        title="Anytime hypervolume per method: mean over seeds, min-max shaded",
        height=420 * max(1, len(spaces)),
    )
    return fig


def write_figure(fig: go.Figure, out: Path) -> dict[str, str]:
    """<out>/search_quality.html, and its PNG when a browser renders it (`analysis.png`)."""
    html = out / "search_quality.html"
    fig.write_html(html, include_plotlyjs=True)
    pngs = write_pngs({"hypervolume": fig}, out, "search_quality")
    png = str(pngs[0]) if isinstance(pngs, list) and pngs else str(pngs)
    return {"html": str(html), "png": png}
