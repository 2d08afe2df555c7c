"""The dashboard: one self-contained HTML file per search (`report.html`) or per comparison.

plotly.js is embedded once, so the file opens on a cluster without internet. `run_search.py
search` rewrites `report.html` after each finished trial (reload it during a search);
`run_search.py report` writes it on demand, and a PNG of each figure when a browser engine is
present (`analysis.png`). Each figure comes with the question it answers (`QUESTIONS`; a
new figure is a function in `analysis.figures*` plus its entry there: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

from analysis.export import pick, retrain_command
from analysis.figures import (
    PARETO_DIV,
    common_reference,
    front_axes,
    hypervolume_figure,
    parallel_figure,
    pareto_figure,
    rate_distortion_figure,
)
from analysis.figures_training import beta_figure, curves_figure
from analysis.labels import mi_caption
from analysis.pareto import excluded_counts, hypervolume, pareto_front
from analysis.png import write_pngs
from analysis.results import Results, ResultsError, load_curves, load_many
from experiment.files import write_atomic

QUESTIONS = {  # figure id -> the question it answers
    PARETO_DIV: "Which trials trade NLL for information best, and how sure is each MI value?",
    "rate-distortion": "Where does each trial sit between compressing (rate) and "
    "reconstructing (distortion), and at what ELBO?",
    "parallel": "Which multipliers lead to which metrics?",
    "hypervolume": "How did the front as a whole grow as trials finished?",
    "curves": "What happened during training: did information rise or collapse?",
    "beta": "At a given β, does the extra multiplier λ buy NLL?",
}


class Written(NamedTuple):
    path: Path  # the HTML file
    images: list[Path] | str | None  # the PNGs, why there are none, or None: not asked


def figures(runs: Sequence[Results]) -> dict[str, go.Figure]:
    """Every figure the results can draw, by id (in dashboard order)."""
    curves = load_curves(*[r.location for r in runs])
    reference = common_reference(runs)
    made = {
        PARETO_DIV: pareto_figure(runs),
        "rate-distortion": rate_distortion_figure(runs),
        "parallel": parallel_figure(runs),
        "hypervolume": hypervolume_figure(runs, reference),
        "curves": curves_figure(runs, curves),
        "beta": beta_figure(runs),
    }
    return {name: figure for name, figure in made.items() if figure is not None}


def write_report(location: str | Path, out: str | Path | None = None, png: bool = False) -> Written:
    """Write the dashboard of one search (default `<directory>/report.html`); with `png`, also
    `<name>.<figure>.png` beside it when a browser engine is present."""
    [results] = load_many([location])
    out = Path(out) if out else results.directory / "report.html"
    made = figures([results])
    parts = [f"<h1>{html.escape(results.name)}</h1>", _counts(results), _objectives(results)]
    parts += _figure_sections(made, results)
    parts += _best_trials(results)
    _write_page(out, results.name, parts)
    images = write_pngs(made, out.parent, prefix=results.name) if png else None
    return Written(out, images)


def write_comparison(
    locations: Sequence[str | Path], out: str | Path, png: bool = False
) -> Written:
    """One dashboard overlaying several searches (β-ELBO against InfoVAE, grid against TPE)."""
    runs = load_many(locations)
    metrics, _ = front_axes(runs[0])
    for run in runs[1:]:
        missing = [m for m in metrics if m not in run.trials]
        if missing:
            raise ResultsError(f"compare: {run.location} has no {', '.join(missing)} column")
    made = figures(runs)
    out = Path(out)
    names = [str(r.trials["experiment"].iloc[0]) for r in runs]
    parts = [f"<h1>{html.escape(' vs '.join(names))}</h1>", _comparison_table(runs)]
    parts += _figure_sections(made, runs[0])
    _write_page(out, " vs ".join(names), parts)
    images = write_pngs(made, out.parent, prefix=out.stem) if png else None
    return Written(out, images)


def _figure_sections(made: dict[str, go.Figure], results: Results) -> list[str]:
    parts = []
    for i, (name, figure) in enumerate(made.items()):
        parts.append(f"<h2>{html.escape(QUESTIONS[name])}</h2>")
        if name == PARETO_DIV:
            parts.append(f"<p class='caption'>{html.escape(mi_caption(results))}</p>")
        parts.append(figure.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=name))
    return parts


def _counts(results: Results) -> str:
    counts = results.trials["status"].astype(str).value_counts().to_dict()
    text = ", ".join(f"{v} {html.escape(str(k))}" for k, v in counts.items())
    metrics, _ = front_axes(results)
    excluded = excluded_counts(results.trials, metrics)
    left_out = ", ".join(f"{v} {html.escape(k)}" for k, v in excluded.items()) or "none"
    return (
        f"<p>Trials: {text}. In the fronts: {len(results.finished)}; left out: {left_out} "
        "(diverged, refused, failed and unfinished trials are never on a front).</p>"
    )


def _objectives(results: Results) -> str:
    metrics, modes = results.objectives
    pairs = ", ".join(f"{m} ({d})" for m, d in zip(metrics, modes, strict=True))
    return f"<p>Objectives: {html.escape(pairs)}. {html.escape(mi_caption(results))}</p>"


def _best_trials(results: Results) -> list[str]:
    """The min-nll, max-MI and knee trials, then the Pareto set, each with its command."""
    done = results.finished
    if done.empty:
        return ["<p>No finished trial yet.</p>"]
    rows, seen = [], set()
    choices = ["min-nll", "max-mi", "knee"]
    for choice in choices:
        try:
            row, _ = pick(results, choice, done)
        except ResultsError:
            continue
        rows.append((choice, row))
    front = pareto_front(done, *front_axes(results))
    rows += [("Pareto front", row) for _, row in front.iterrows()]
    shown = ["trial_id", "family", "alpha1", "alpha2", *results.searched]
    shown += [m for m in ("nll", "elbo", "rate", "distortion", results.mi_metric) if m]
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ["why", *dict.fromkeys(shown)])
    lines = [f"<table class='best'><tr>{header}<th>re-train</th></tr>"]
    for why, row in rows:
        key = (why == "Pareto front", row["trial_id"])
        if key in seen:
            continue
        seen.add(key)
        cells = [why, *(_cell(row.get(c)) for c in dict.fromkeys(shown))]
        command = html.escape(retrain_command(results, str(row["trial_id"])))
        body = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        lines.append(f"<tr>{body}<td><code>{command}</code></td></tr>")
    lines.append("</table>")
    return ["<h2>Best trials, and the command that re-trains each</h2>", *lines]


def _comparison_table(runs: Sequence[Results]) -> str:
    reference = common_reference(runs)
    if reference is None:
        return "<p>No finished trial yet.</p>"
    metrics, modes = front_axes(runs[0])
    rows = ["<table class='best'><tr><th>experiment</th><th>trials</th><th>in fronts</th>"]
    rows[0] += "<th>Pareto trials</th><th>hypervolume</th><th>best nll</th></tr>"
    for run in runs:
        done = run.finished
        values = done[metrics].to_numpy(dtype=float)
        volume = hypervolume(values, modes, reference)
        front = pareto_front(done, metrics, modes)
        best = _cell(done["nll"].min()) if len(done) else "-"
        cells = [run.trials["experiment"].iloc[0], len(run.trials), len(done), len(front)]
        cells += [f"{volume:.5g}", best]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    point = ", ".join(f"{m} = {v:.4g}" for m, v in zip(metrics, reference, strict=True))
    rows.append(f"</table><p>Hypervolume over ({', '.join(metrics)}), reference point {point}.</p>")
    return "".join(rows)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _write_page(out: Path, title: str, parts: list[str]) -> None:
    """Atomically, so a browser reloading during a search never reads half a file."""
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table.best{border-collapse:collapse;font-size:0.85em}"
        "table.best td,table.best th{border:1px solid #ddd;padding:3px 6px}"
        ".caption{color:#444}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, page)
