"""Pareto fronts over any metrics with per-metric directions (pure numpy, no plotting)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Which rows of `values` (N, M) no other row dominates; rows with a NaN never count.

    Row a dominates row b when a is at least as good in every metric and better in one;
    `modes[m]` says whether metric m is minimised ("min") or maximised ("max").
    """
    values = np.asarray(values, dtype=float)
    assert values.ndim == 2 and values.shape[1] == len(modes), (
        f"need (N, {len(modes)}) values for modes {list(modes)}, got {values.shape}"
    )
    signs = np.array([1.0 if m == "min" else -1.0 for m in modes])
    assert set(modes) <= {"min", "max"}, f"modes must be 'min' or 'max', got {list(modes)}"
    costs = values * signs  # (N, M), smaller is better everywhere
    finite = np.isfinite(costs).all(axis=1)
    mask = np.zeros(len(costs), dtype=bool)
    for i in np.flatnonzero(finite):
        others = costs[finite]
        no_worse = (others <= costs[i]).all(axis=1)
        better = (others < costs[i]).any(axis=1)
        mask[i] = not (no_worse & better).any()
    return mask


def pareto_front(frame: pd.DataFrame, metrics: Sequence[str], modes: Sequence[str]) -> pd.DataFrame:
    """The non-dominated rows of `frame`, sorted by the first metric."""
    mask = pareto_mask(frame[list(metrics)].to_numpy(dtype=float), modes)
    return frame[mask].sort_values(metrics[0])
