"""Pareto fronts, hypervolume and the knee against brute force on random point sets.

Brute force: dominance straight from its definition over every pair; hypervolume of integer
points by counting the unit cells they dominate (exact for integer coordinates).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.pareto import (
    excluded_counts,
    hypervolume,
    hypervolume_history,
    knee,
    pareto_mask,
    reference_point,
)

SIDE = 6  # integer coordinates 0..SIDE-1; the reference sits at SIDE (min) or -1 (max)


def point_sets(dims: int) -> st.SearchStrategy:
    """Up to 12 integer points (ties likely) and a direction per metric."""
    point = st.tuples(*[st.integers(0, SIDE - 1)] * dims)
    modes = st.tuples(*[st.sampled_from(["min", "max"])] * dims)
    return st.tuples(st.lists(point, min_size=0, max_size=12), modes)


def dominates(a, b, modes) -> bool:
    better = [(x < y) if m == "min" else (x > y) for x, y, m in zip(a, b, modes, strict=True)]
    worse = [(x > y) if m == "min" else (x < y) for x, y, m in zip(a, b, modes, strict=True)]
    return not any(worse) and any(better)


def brute_volume(points, modes) -> int:
    """Unit cells inside the reference box that some point dominates. Cell index c on a
    minimised axis is [c, c+1] (inside [p, SIDE] iff p <= c); on a maximised axis [c-1, c]
    (inside [-1, p] iff p >= c)."""
    count = 0
    for cell in itertools.product(range(SIDE), repeat=len(modes)):
        for p in points:
            if all(
                (p[k] <= cell[k]) if m == "min" else (p[k] >= cell[k]) for k, m in enumerate(modes)
            ):
                count += 1
                break
    return count


def reference_for(modes) -> list[float]:
    return [SIDE if m == "min" else -1 for m in modes]


@pytest.mark.parametrize("dims", [2, 3])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_pareto_mask_matches_the_definition(dims: int, data: st.DataObject) -> None:
    points, modes = data.draw(point_sets(dims))
    values = np.array(points, dtype=float).reshape(-1, dims)
    expected = [not any(dominates(q, p, modes) for q in points) for p in points]
    assert pareto_mask(values, modes).tolist() == expected


@pytest.mark.parametrize("dims", [2, 3])
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_hypervolume_counts_the_dominated_cells(dims: int, data: st.DataObject) -> None:
    points, modes = data.draw(point_sets(dims))
    values = np.array(points, dtype=float).reshape(-1, dims)
    assert hypervolume(values, modes, reference_for(modes)) == brute_volume(points, modes)


def test_hypervolume_by_hand_and_edge_cases() -> None:
    # min x, max y, reference (4, 0): the union of [1,4]x[0,3] and [2,4]x[0,5] is 9 + 4 = 13
    values = np.array([[1.0, 3.0], [2.0, 5.0], [3.0, 1.0]])  # the last is dominated
    assert hypervolume(values, ["min", "max"], [4.0, 0.0]) == pytest.approx(13.0)
    assert hypervolume(values[:0], ["min", "max"], [4.0, 0.0]) == 0.0
    outside = np.array([[5.0, 3.0], [np.nan, 9.0]])  # beyond the reference, and a NaN
    assert hypervolume(outside, ["min", "max"], [4.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="2 or 3 metrics"):
        hypervolume(np.ones((2, 4)), ["min"] * 4, [2.0] * 4)


def test_reference_point_lies_beyond_the_worst_values_in_each_direction() -> None:
    values = np.array([[1.0, 3.0], [2.0, 5.0], [np.nan, 100.0]])
    reference = reference_point(values, ["min", "max"])
    assert reference == pytest.approx([2.1, 2.8])  # 10% of the spread beyond the worst
    assert hypervolume(values, ["min", "max"], reference) > 0  # the worst points count


@settings(max_examples=100, deadline=None)
@given(point_sets(2))
def test_knee_is_on_the_front_and_nearest_the_ideal_point(case) -> None:
    points, modes = case
    frame = pd.DataFrame(points, columns=["a", "b"])
    row = knee(frame, ["a", "b"], modes)
    if not points:
        assert row is None
        return
    front = [p for p in points if not any(dominates(q, p, modes) for q in points)]
    assert (row["a"], row["b"]) in front
    signs = [1 if m == "min" else -1 for m in modes]
    costs = np.array(front) * signs
    low, high = costs.min(axis=0), costs.max(axis=0)
    spread = np.where(high > low, high - low, 1)
    distances = np.sqrt((((costs - low) / spread) ** 2).sum(axis=1))
    mine = np.sqrt(((((np.array([row["a"], row["b"]]) * signs) - low) / spread) ** 2).sum())
    assert mine == pytest.approx(distances.min())


def test_knee_of_a_convex_front_is_its_bend() -> None:
    frame = pd.DataFrame({"nll": [1.0, 1.1, 2.0, 3.0], "mi": [0.0, 2.0, 2.2, 2.3]})
    assert knee(frame, ["nll", "mi"], ["min", "max"]).name == 1


def test_history_grows_with_finished_trials_and_counts_excluded_ones() -> None:
    frame = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "e"],
            "status": ["ok", "diverged", "ok", "ok", "refused"],
            "nll": [2.0, np.nan, 1.0, 1.5, np.nan],
            "mi": [1.0, np.nan, 0.5, 2.0, np.nan],
        }
    )
    reference = [3.0, 0.0]
    history = hypervolume_history(frame, ["nll", "mi"], ["min", "max"], reference)
    assert history["trials"].tolist() == [1, 2, 3, 4, 5]
    assert history["hypervolume"].tolist() == pytest.approx([1.0, 1.0, 1.5, 3.25, 3.25])
    assert excluded_counts(frame, ["nll", "mi"]) == {"diverged": 1, "refused": 1}
    frame.loc[0, "mi"] = np.nan  # an ok trial without metrics is excluded too, and said
    assert excluded_counts(frame, ["nll", "mi"])["no metrics"] == 1
