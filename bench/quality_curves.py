"""The pure part of bench/search_quality.py: anytime hypervolume curves and what is read off them.

A search's trials finish at times t_1 <= t_2 <= ... (seconds since its search started) or after
s_1 <= s_2 <= ... trained steps; its anytime hypervolume at x is the hypervolume of the
usable trials finished by x (`analysis.pareto.hypervolume`, one reference point for every
method of a benchmark). A curve is a step function: 0 before the first point, then the value
after each finished trial. No I/O, no plotting, no Ray.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analysis.pareto import hypervolume

REACH_TOLERANCE = 1e-9  # relative: the same front summed in another order rounds differently


@dataclass(frozen=True)
class Curve:
    """`x` ascending (seconds or steps at which trials finished), `hv` after each of them."""

    x: np.ndarray
    hv: np.ndarray

    @property
    def final(self) -> float:
        return float(self.hv[-1]) if len(self.hv) else 0.0

    @property
    def end(self) -> float:
        return float(self.x[-1]) if len(self.x) else 0.0


def anytime_curve(
    x: Sequence[float],
    values: np.ndarray,
    usable: Sequence[bool],
    modes: Sequence[str],
    reference: Sequence[float],
) -> Curve:
    """The hypervolume after each finished trial, in order of `x` (ties keep their order).

    `values` (N, M): each trial's metrics; `usable[i]`: whether trial i counts for a front
    (`analysis.pareto.usable_mask`); a trial that does not count still marks its x."""
    x = np.asarray(x, dtype=float)
    values = np.asarray(values, dtype=float).reshape(len(x), -1)
    order = np.argsort(x, kind="stable")
    x, values = x[order], values[order]
    usable = np.asarray(usable, dtype=bool)[order]
    hv = np.zeros(len(x))
    for i in range(len(x)):
        kept = values[: i + 1][usable[: i + 1]]
        hv[i] = hypervolume(kept, modes, reference) if len(kept) else 0.0
    return Curve(x, hv)


def cumulative(x: Sequence[float], amounts: Sequence[float]) -> np.ndarray:
    """Each trial's running total of `amounts` in order of `x`, returned in the trials' own
    order: the steps trained by the time each trial finished (its own included)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    totals = np.empty(len(x))
    totals[order] = np.cumsum(np.asarray(amounts, dtype=float)[order])
    return totals


def value_at(curve: Curve, at: float) -> float:
    """The curve's hypervolume at `at`: of the trials finished by then (0 before the first)."""
    index = int(np.searchsorted(curve.x, at, side="right")) - 1
    return float(curve.hv[index]) if index >= 0 else 0.0


def time_to_reach(curve: Curve, target: float) -> float:
    """The first x at which the curve reaches `target` (inf when it never does)."""
    if target <= 0:
        return 0.0
    reached = np.flatnonzero(curve.hv >= target * (1 - REACH_TOLERANCE))
    return float(curve.x[reached[0]]) if len(reached) else math.inf


@dataclass(frozen=True)
class Spread:
    """A ratio over seeds: its mean, lowest and highest, and how many seeds were finite."""

    mean: float
    low: float
    high: float
    finite: int
    seeds: int

    def text(self) -> str:
        if self.seeds == 0:
            return "-"
        if self.finite < self.seeds:  # some seed never got there
            return f"never ({self.seeds - self.finite}/{self.seeds} seeds)"
        return f"{self.mean:.2f} [{self.low:.2f}-{self.high:.2f}]"

    def as_dict(self) -> dict[str, float | int | None]:
        def plain(v: float) -> float | None:
            return round(v, 4) if math.isfinite(v) else None

        return {
            "mean": plain(self.mean),
            "low": plain(self.low),
            "high": plain(self.high),
            "seeds": self.seeds,
            "finite": self.finite,
        }


def spread(ratios: Sequence[float]) -> Spread:
    """Mean, min and max of per-seed ratios; inf when one seed's is (it never reached)."""
    r = np.asarray(ratios, dtype=float)
    if len(r) == 0:
        return Spread(math.nan, math.nan, math.nan, 0, 0)
    finite = int(np.isfinite(r).sum())
    return Spread(float(r.mean()), float(r.min()), float(r.max()), finite, len(r))


def safe_ratio(a: float, b: float) -> float:
    """a / b, inf when b is 0 and a is not (0 / 0: 1, both at the start)."""
    if b == 0:
        return 1.0 if a == 0 else math.inf
    return a / b


def reach_ratio(method: Curve, reference: Curve) -> float:
    """x `method` needs to reach `reference`'s final hypervolume, over what `reference` needs."""
    target = reference.final
    return safe_ratio(time_to_reach(method, target), time_to_reach(reference, target))


def hv_ratio_at(method: Curve, reference: Curve, fraction: float, reference_end: float) -> float:
    """`method`'s hypervolume at `fraction` of `reference_end` (the reference's wall time),
    over the reference's final hypervolume."""
    return safe_ratio(value_at(method, fraction * reference_end), reference.final)


def band(curves: Sequence[Curve], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over `curves` of their values at each point of `grid` (a figure's
    line and its shading over seeds)."""
    table = np.array([[value_at(c, g) for g in grid] for c in curves])
    return table.mean(axis=0), table.min(axis=0), table.max(axis=0)
