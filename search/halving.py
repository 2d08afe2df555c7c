"""Multi-objective successive halving across members (`search.scheduler: halving`); pure, no Ray.

Asynchronous successive halving (ASHA, Li et al., MLSys 2020) stops a run at a rung when its
value is outside the best 1/η of the values recorded at that rung so far. Neither Ray's
schedulers nor Optuna's pruners do this for several objectives, so here it is on the rank of
non-dominated sorting (Deb et al. 2002): a member reaching a rung continues if fewer than
ceil(n / η) of the n members recorded there (itself included) lie in a strictly better front.
Members tied in a front are never split, so a rung never stops a point of the current Pareto
front of its peers, and with one objective this is ASHA's rule with ties kept.

The rungs are fractions 1/η^i of the training steps (1/9 and 1/3 at η = 3); the study keeps
every member's values at each rung (`search.study.FamilyStudy.rung`), so the peers are all
members of the search, in every trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Point = Sequence[float]


def rungs(steps: int, rate: float, count: int = 2) -> list[int]:
    """The rung steps, ascending: steps / η^i for i = count .. 1, rounded down, each > 0."""
    found = {int(steps / rate**i) for i in range(count, 0, -1)}
    return sorted(s for s in found if 0 < s < steps)


def _oriented(point: Point, modes: Sequence[str]) -> tuple[float, ...]:
    """Every objective to minimise; a point with a non-finite value is the worst possible in
    every objective (a member whose evaluation failed is never kept for its other values)."""
    values = [float(v) for v in point]
    if not all(math.isfinite(v) for v in values):
        return (math.inf,) * len(values)
    return tuple(v if mode == "min" else -v for v, mode in zip(values, modes, strict=True))


def dominates(a: Point, b: Point) -> bool:
    """a (oriented: all minimised) is no worse than b everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def fronts(points: Sequence[Point], modes: Sequence[str]) -> list[int]:
    """The non-dominated-sorting front of each point: 0 for the Pareto set, 1 for the Pareto
    set of the rest, and so on."""
    oriented = [_oriented(p, modes) for p in points]
    rank = [-1] * len(points)
    left = set(range(len(points)))
    front = 0
    while left:
        current = {i for i in left if not any(dominates(oriented[j], oriented[i]) for j in left)}
        for i in current:
            rank[i] = front
        left -= current
        front += 1
    return rank


def stops(peers: Sequence[Point], mine: Point, rate: float, modes: Sequence[str]) -> bool:
    """Whether a member with values `mine` stops at a rung where `peers` (the others recorded
    there) stand: fewer than ceil(n / η) points of the n may lie in a better front."""
    points = [*peers, mine]
    rank = fronts(points, modes)
    better = sum(r < rank[-1] for r in rank[:-1])
    return better >= math.ceil(len(points) / rate)
