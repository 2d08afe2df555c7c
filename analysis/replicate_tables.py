"""The tables of a replicate (analysis/replicate.py): one row per run, means with standard
errors over seeds, and a plain verdict per claim.

- `runs.csv`: every run's final metrics, steps, state and wall seconds.
- Per group and grid point: n seeds, mean ± standard error (sample std / √n) of the metrics.
- figure2: each point of a group with a `baseline` against the baseline's point at the same
  values of the baseline's grid keys (β): Δ = mean − baseline mean with SE √(se² + se_b²).
  The claim "λ > 0 gives a lower NLL" holds at a point only where Δ < −2 SE (issue 17's
  rule); "worse" where Δ > 2 SE; otherwise "within 2 SE".
- figure1: per run, from its curve: the step where MI first comes within 5 % of its maximum
  (it "stops"), NLL there, NLL at the end, and the recovery = NLL at the stop − final NLL;
  "NLL recovers once MI stops" holds where the mean recovery exceeds 2 SE.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.tables import markdown

METRICS = ("nll", "nll_train", "mi", "mi_upper", "rate", "distortion", "floor_units", "mmd_qz_pz")


def curve(directory: Path) -> pd.DataFrame:
    """A run's evaluations, one row per step (a step written twice by a resumed run: the last)."""
    path = directory / "metrics.jsonl"
    if not path.is_file():
        return pd.DataFrame()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows).drop_duplicates("step", keep="last").reset_index(drop=True)


def run_rows(replicate: Any) -> pd.DataFrame:
    rows = []
    for run in replicate.runs:
        points = curve(run.directory)
        last = points.iloc[-1].to_dict() if len(points) else {}
        wall = run.directory / "wall.json"
        row = {"group": run.group, **run.values, "seed": run.seed, "state": run.state()}
        row |= {"steps": last.get("step"), "status": last.get("status")}
        row |= {m: last.get(m, math.nan) for m in METRICS}
        row["wall_s"] = json.loads(wall.read_text())["seconds"] if wall.is_file() else math.nan
        row |= figure1_shape(points) if len(points) else {}
        rows.append(row)
    return pd.DataFrame(rows)


FIGURE1_SHAPE = ("mi_stop_step", "nll_at_mi_stop", "nll_min_after_stop", "recovery")


def figure1_shape(points: pd.DataFrame) -> dict[str, float]:
    """MI's stop (first step within 5 % of its maximum), NLL there and at the end."""
    mi, nll = points["mi"].to_numpy(float), points["nll"].to_numpy(float)
    if not np.isfinite(mi).any():
        return {}
    stop = int(np.argmax(mi >= np.nanmax(mi) - 0.05 * abs(np.nanmax(mi))))
    return {
        "mi_stop_step": float(points["step"].iloc[stop]),
        "nll_at_mi_stop": nll[stop],
        "nll_min_after_stop": float(np.nanmin(nll[stop:])),
        "recovery": nll[stop] - nll[-1],
    }


def mean_se(values: pd.Series) -> tuple[float, float]:
    values = values.dropna().astype(float)
    if values.empty:
        return math.nan, math.nan
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return float(values.mean()), float(se)


def with_error(mean: float, se: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if math.isnan(se) else f"{mean:.4g} ± {se:.2g}"


def summary(rows: pd.DataFrame, keys: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    out = []
    for point, part in rows.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, point if isinstance(point, tuple) else (point,), strict=True))
        row["seeds"] = int(part["nll"].notna().sum())
        for metric in metrics:
            if metric in part:
                row[metric] = with_error(*mean_se(part[metric]))
        out.append(row)
    return pd.DataFrame(out)


def figure2_verdicts(rows: pd.DataFrame, groups: dict[str, dict[str, Any]]) -> pd.DataFrame:
    out = []
    for name, entry in groups.items():
        base_name = entry.get("baseline")
        if base_name is None:
            continue
        base_keys = list(groups[base_name].get("grid") or {})
        keys = list(entry.get("grid") or {})
        mine, base = rows[rows["group"] == name], rows[rows["group"] == base_name]
        for point, part in mine.groupby(keys, sort=False):
            values = dict(zip(keys, point if isinstance(point, tuple) else (point,), strict=True))
            match = base
            for key in base_keys:
                match = match[match[key] == values.get(key)]
            row: dict[str, Any] = {"group": name, **values, "against": base_name}
            for metric in ("nll", "nll_train"):
                (m, s), (mb, sb) = mean_se(part[metric]), mean_se(match[metric])
                delta, se = m - mb, math.sqrt(s * s + sb * sb)
                row[f"{metric} Δ"] = with_error(delta, se)
                row[f"{metric} verdict"] = verdict(delta, se, "lower", "higher")
            out.append(row)
    return pd.DataFrame(out)


def verdict(delta: float, se: float, below: str, above: str) -> str:
    if math.isnan(delta) or math.isnan(se):
        return "undecided (fewer than 2 seeds a side)"
    if delta < -2 * se:
        return f"{below} by > 2 SE"
    return f"{above} by > 2 SE" if delta > 2 * se else "within 2 SE"


def figure1_verdicts(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = []
    for point, part in rows.groupby(keys, sort=False):
        row = dict(zip(keys, point if isinstance(point, tuple) else (point,), strict=True))
        m, s = mean_se(part.get("recovery", pd.Series(dtype=float)))
        row["recovery"] = with_error(m, s)  # NLL at MI's stop minus final NLL
        row["NLL recovers once MI stops"] = verdict(-m, s, "yes", "NLL rose").replace(
            "within 2 SE", "no (within 2 SE)"
        )
        out.append(row)
    return pd.DataFrame(out)


def run_rows_states(replicate: Any) -> dict[str, int]:
    """How many runs are in each state (done, interrupted, new)."""
    return pd.Series([run.state() for run in replicate.runs]).value_counts().to_dict()


def finished_rows(replicate: Any) -> pd.DataFrame:
    """`run_rows` with every grid key as a column and the metrics of unfinished runs NaN: an
    interrupted run's last line is a mid-run evaluation (runs.csv keeps it, with its state)."""
    rows = run_rows(replicate)
    for key in dict.fromkeys(k for r in replicate.runs for k in r.values):
        if key not in rows:
            rows[key] = math.nan
    measured = [c for c in rows.columns if c in METRICS or c in FIGURE1_SHAPE]
    rows.loc[rows["state"] != "done", measured] = math.nan
    return rows


def write_tables(replicate: Any) -> str:
    """`runs.csv` and `tables.md` in the replicate's directory; the markdown."""
    replicate.home.mkdir(parents=True, exist_ok=True)
    run_rows(replicate).to_csv(replicate.home / "runs.csv", index=False)
    rows = finished_rows(replicate)
    keys = ["group", *dict.fromkeys(k for r in replicate.runs for k in r.values)]
    sections = [
        ("Runs (mean ± standard error over seeds)", summary(rows, keys, (*METRICS, "wall_s")))
    ]
    if replicate.table == "figure2":
        sections.append(
            ("λ > 0 against λ = 0 (rule: > 2 SE)", figure2_verdicts(rows, replicate.groups))
        )
    else:
        shape = ("mi_stop_step", "nll_at_mi_stop", "nll_min_after_stop", "nll")
        sections.append(("The curve around MI's stop", summary(rows, keys, shape)))
        sections.append(
            ("Does NLL recover once MI stops? (rule: > 2 SE)", figure1_verdicts(rows, keys))
        )
    states = run_rows_states(replicate)
    counts = ", ".join(f"{v} {k}" for k, v in states.items())
    head = f"## {replicate.name}: {len(replicate.runs)} runs ({counts})"
    text = "\n\n".join([head, *(f"### {t}\n\n{markdown(f)}" for t, f in sections if len(f))])
    (replicate.home / "tables.md").write_text(text + "\n")
    return text
