"""A placed start-up: the first points a search asks, from a 3-level orthogonal array.

A model-based sampler starts from random points, and a population search asks a whole batch
of them before any result is told. `search.startup: orthogonal` places that start-up instead
at the low end, the middle and the high end of every searched range (`Param.grid(3)`, the
middle geometric on a log range), in the rows of an orthogonal array of strength 2: every
pair of parameters meets every pair of levels equally often, so the first results measure
each multiplier's main effect on balanced points, boundaries included, where a grid looks and
a random start-up rarely does (Taguchi's L9 is the 9-row array for up to 4 parameters).

The array is the linear one over GF(3) (Bose, 1938): for rank m, one row per vector u in
GF(3)^m, one column per direction c (a nonzero vector whose first nonzero entry is 1), entry
u.c mod 3. Two columns are independent, which is strength 2; up to (3^m - 1)/2 columns, with
the unit vectors first (so 2 parameters get the full 3 x 3 grid). A seed permutes each
column's levels and the order of the rows; a start-up shorter than the array takes its first
rows (balance then holds only roughly). Pure: no Optuna, no Ray.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping

from search.spaces import Space

LEVELS = 3


def directions(rank: int) -> list[tuple[int, ...]]:
    """The nonzero vectors of GF(3)^rank whose first nonzero entry is 1, unit vectors first."""
    units = [tuple(int(i == j) for j in range(rank)) for i in range(rank)]
    others = [
        v
        for v in itertools.product(range(LEVELS), repeat=rank)
        if any(v) and next(x for x in v if x) == 1 and v not in units
    ]
    return units + others


def rank_for(factors: int) -> int:
    """The smallest rank m whose array has a column for each of `factors` parameters."""
    m = 1
    while (LEVELS**m - 1) // 2 < factors:
        m += 1
    return m


def orthogonal_array(factors: int) -> list[tuple[int, ...]]:
    """3^m rows of `factors` levels in {0, 1, 2}, strength 2 (`rank_for`, `directions`)."""
    if factors < 1:
        return []
    m = rank_for(factors)
    columns = directions(m)[:factors]
    return [
        tuple(sum(a * b for a, b in zip(u, c, strict=True)) % LEVELS for c in columns)
        for u in itertools.product(range(LEVELS), repeat=m)
    ]


def startup_points(space: Space, count: int, seed: int) -> list[dict[str, float]]:
    """At most `count` points of the space (dotted key -> value) in orthogonal-array rows,
    levels and rows permuted by `seed`."""
    rng = random.Random(seed)
    rows = orthogonal_array(len(space.params))
    rng.shuffle(rows)
    relabel = [rng.sample(range(LEVELS), LEVELS) for _ in space.params]
    values = [
        [p.grid(LEVELS)[j] for j in order] for p, order in zip(space.params, relabel, strict=True)
    ]
    return [
        {p.key: v[level] for p, v, level in zip(space.params, values, row, strict=True)}
        for row in rows[: max(0, count)]
    ]


def without(
    points: list[dict[str, float]], taken: list[Mapping[str, float]]
) -> list[dict[str, float]]:
    """`points` less those already enqueued (a preset may be a design point)."""
    return [p for p in points if all(p != dict(t) for t in taken)]
