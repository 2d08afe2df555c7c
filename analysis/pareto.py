"""Pareto fronts, exact hypervolume and a knee, over 2 or 3 metrics with per-metric directions.

Pure numpy and pandas, no plotting. Every function takes `modes` ("min" or "max" per metric)
and works internally on costs (a maximised metric negated), so smaller is better everywhere.

- `pareto_mask`: the rows no other row dominates (a dominates b: no worse in every metric,
  better in one; equal rows do not dominate each other).
- `hypervolume`: the volume dominated by the points and bounded by a reference point, exact:
  a sweep in 2-D, slices along the last metric in 3-D (each slice a 2-D sweep; O(N² log N),
  fine for the hundreds of trials a search runs).
- `reference_point`: the stated reference: per metric the worst finished value, pushed
  `REFERENCE_MARGIN` of the metric's spread further out (so the worst points still count).
- `knee`: the front point nearest the ideal point after scaling each metric to [0, 1] over the
  front (see `knee`'s docstring for the rule and its ties).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from experiment.status import OK

REFERENCE_MARGIN = 0.1  # the reference lies 10% of each metric's spread beyond its worst value


def costs_of(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """(N, M) values as costs: maximised metrics negated, so smaller is better everywhere."""
    values = np.asarray(values, dtype=float)
    assert values.ndim == 2 and values.shape[1] == len(modes), (
        f"need (N, {len(modes)}) values for modes {list(modes)}, got {values.shape}"
    )
    assert set(modes) <= {"min", "max"}, f"modes must be 'min' or 'max', got {list(modes)}"
    return values * np.array([1.0 if m == "min" else -1.0 for m in modes])


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Which rows of `values` (N, M) no other row dominates; rows with a NaN never count.

    Row a dominates row b when a is at least as good in every metric and better in one;
    `modes[m]` says whether metric m is minimised ("min") or maximised ("max").
    """
    costs = costs_of(values, modes)  # (N, M)
    finite = np.isfinite(costs).all(axis=1)
    mask = np.zeros(len(costs), dtype=bool)
    others = costs[finite]
    for i in np.flatnonzero(finite):
        no_worse = (others <= costs[i]).all(axis=1)
        better = (others < costs[i]).any(axis=1)
        mask[i] = not (no_worse & better).any()
    return mask


def pareto_front(frame: pd.DataFrame, metrics: Sequence[str], modes: Sequence[str]) -> pd.DataFrame:
    """The non-dominated rows of `frame`, sorted by the first metric."""
    mask = pareto_mask(frame[list(metrics)].to_numpy(dtype=float), modes)
    return frame[mask].sort_values(list(metrics)[0])


def reference_point(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Per metric the worst finite value, moved `REFERENCE_MARGIN` of the spread (at least
    1e-9 and 1e-6 of the value's size) further out; in the metrics' own units and signs."""
    costs = costs_of(values, modes)
    costs = costs[np.isfinite(costs).all(axis=1)]
    assert len(costs), "a reference point needs at least one finite row"
    worst, best = costs.max(axis=0), costs.min(axis=0)
    margin = np.maximum(REFERENCE_MARGIN * (worst - best), np.maximum(1e-9, 1e-6 * abs(worst)))
    return costs_of((worst + margin)[None, :], modes)[0]  # negating twice restores the sign


def hypervolume(values: np.ndarray, modes: Sequence[str], reference: Sequence[float]) -> float:
    """The volume the rows dominate inside the box bounded by `reference` (2 or 3 metrics).

    Rows with a NaN, or not strictly better than the reference in every metric, add nothing.
    """
    costs = costs_of(values, modes)
    ref = costs_of(np.asarray(reference, dtype=float)[None, :], modes)[0]
    inside = np.isfinite(costs).all(axis=1) & (costs < ref).all(axis=1)
    costs = costs[inside]
    if len(costs) == 0:
        return 0.0
    if costs.shape[1] == 2:
        return _area(costs, ref)
    if costs.shape[1] == 3:
        return _volume(costs, ref)
    raise ValueError(f"hypervolume: 2 or 3 metrics, got {costs.shape[1]}")


def _area(costs: np.ndarray, ref: np.ndarray) -> float:
    """2-D sweep: sort by the first cost; each point adds the strip its second cost improves."""
    order = np.lexsort((costs[:, 1], costs[:, 0]))
    area, level = 0.0, ref[1]  # the best second cost so far
    for x, y in costs[order]:
        if y < level:
            area += (ref[0] - x) * (level - y)
            level = y
    return float(area)


def _volume(costs: np.ndarray, ref: np.ndarray) -> float:
    """3-D by slices along the third cost: between consecutive third costs the dominated
    cross-section is the 2-D area of the points already below."""
    order = np.argsort(costs[:, 2], kind="stable")
    costs = costs[order]
    heights = [*costs[1:, 2], ref[2]]
    volume = 0.0
    for i, top in enumerate(heights):
        thickness = top - costs[i, 2]
        if thickness > 0:
            volume += thickness * _area(costs[: i + 1, :2], ref[:2])
    return float(volume)


def knee(frame: pd.DataFrame, metrics: Sequence[str], modes: Sequence[str]) -> pd.Series | None:
    """The knee of the Pareto front of `frame` (None when no row is finite).

    Rule: take the non-dominated rows, scale each metric to [0, 1] over them (0 = the front's
    best value, 1 = its worst; a metric constant on the front scales to 0), and pick the row
    nearest (Euclidean) to the ideal point (0, ..., 0): the balanced compromise, the point
    where giving up a little of one metric stops buying much of the others. Ties go to the
    row better in the first metric, then the earlier row.
    """
    front = frame[pareto_mask(frame[list(metrics)].to_numpy(dtype=float), modes)]
    if front.empty:
        return None
    costs = costs_of(front[list(metrics)].to_numpy(dtype=float), modes)
    low, high = costs.min(axis=0), costs.max(axis=0)
    spread = np.where(high > low, high - low, 1.0)
    distance = np.sqrt((((costs - low) / spread) ** 2).sum(axis=1))
    best = np.lexsort((np.arange(len(front)), costs[:, 0], np.round(distance, 12)))[0]
    return front.iloc[best]


def hypervolume_history(
    frame: pd.DataFrame, metrics: Sequence[str], modes: Sequence[str], reference: Sequence[float]
) -> pd.DataFrame:
    """Hypervolume after each finished trial, in the order they finished.

    `frame` holds every finished trial, whatever its status, in finishing order; a trial that
    is not `ok` (or has a NaN objective) counts as a trial and adds nothing. Columns:
    `trials` (1, 2, ...), `trial_id`, `hypervolume`.
    """
    values = frame[list(metrics)].to_numpy(dtype=float)
    usable = usable_mask(frame, metrics)
    rows = []
    for i in range(len(frame)):
        kept = values[: i + 1][usable[: i + 1]]
        volume = hypervolume(kept, modes, reference) if len(kept) else 0.0
        rows.append((i + 1, str(frame["trial_id"].iloc[i]), volume))
    return pd.DataFrame(rows, columns=["trials", "trial_id", "hypervolume"])


def usable_mask(frame: pd.DataFrame, metrics: Sequence[str]) -> np.ndarray:
    """Rows that count for a front: status `ok` (when there is a status) and finite metrics."""
    finite = np.isfinite(frame[list(metrics)].to_numpy(dtype=float)).all(axis=1)
    if "status" in frame:
        finite &= frame["status"].astype(str).eq(OK).to_numpy()
    return finite


def excluded_counts(frame: pd.DataFrame, metrics: Sequence[str]) -> dict[str, int]:
    """Trials left out of every front, by reason: their status, or `no metrics` for an ok
    trial whose objectives are not finite."""
    usable = usable_mask(frame, metrics)
    status = frame["status"].astype(str) if "status" in frame else pd.Series(OK, frame.index)
    reasons = status.where(status.ne(OK), "no metrics")[~usable]
    return {str(k): int(v) for k, v in reasons.value_counts().sort_index().items()}
