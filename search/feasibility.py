"""Which points of a space the compiler accepts, checked before anything trains.

`check_compiles` compiles a grid over the box (corners and midpoints) and refuses a space,
naming the refused region, before Ray starts; `refusal(experiment, point)` is the same check
for one sampled point (a refused point is told to Optuna as failed and never trained).
`enqueue_presets` turns `search.enqueue_presets` into full points, tried first.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from experiment.config import ConfigError, Experiment
from objectives.presets import get_preset
from search.spaces import Param, Space

GRID_LIMIT = 729  # most points compiled by `check_compiles` (3 values per parameter up to 6)


def refusal(experiment: Experiment, point: Mapping[str, float]) -> str | None:
    """Why the compiler refuses the experiment at `point` (dotted key -> value), or None."""
    try:
        experiment.with_values(point)  # compiles the objective there (Experiment.compiled)
    except ConfigError as error:
        return str(error)
    return None


def grid_points(space: Space, limit: int = GRID_LIMIT) -> Iterator[dict[str, float]]:
    """Corners and midpoints of the box over the objective's parameters (others at their
    middle), 3 values a parameter while 3^d <= limit, else corners, else a thinned sweep."""
    objective = [p for p in space.params if p.key.startswith("objective.")]
    fixed = {p.key: p.middle for p in space.params if not p.key.startswith("objective.")}
    per_param = 3 if 3 ** len(objective) <= limit else 2
    axes = [p.grid(per_param) for p in objective]
    total = per_param ** len(objective)
    stride = max(1, total // limit)
    for index, values in enumerate(itertools.product(*axes)):
        if index % stride == 0:
            yield {**fixed, **{p.key: v for p, v in zip(objective, values, strict=True)}}


def check_compiles(experiment: Experiment, space: Space) -> int:
    """Compile the grid of `grid_points`; raise ConfigError naming the refused region.

    Returns the number of points compiled. The region is described per parameter: the grid
    values at which every point was refused, else the refused points themselves.
    """
    refused: list[tuple[dict[str, float], str]] = []
    points = list(grid_points(space))
    for point in points:
        reason = refusal(experiment, point)
        if reason is not None:
            refused.append((point, reason))
    if refused:
        raise ConfigError(f"space: the compiler refuses {_region(space, points, refused)}")
    return len(points)


def _region(
    space: Space, points: list[dict[str, float]], refused: list[tuple[dict[str, float], str]]
) -> str:
    count = f"{len(refused)} of {len(points)} grid points of the box"
    if len(refused) == len(points):
        return f"the whole box ({count}): {refused[0][1]}"
    bad = {id(p) for p, _ in refused}
    sides = []
    for param in space.params:
        values = sorted({point[param.key] for point, _ in refused})
        all_bad = [v for v in values if all(id(p) in bad for p in points if p[param.key] == v)]
        if all_bad:
            sides.append(f"{param.key} = {', '.join(f'{v:g}' for v in all_bad)}")
    first, reason = refused[0]
    where = "; ".join(sides) if sides else _format_point(first)
    return f"{count}, where {where}: {reason} (narrow the ranges to leave that region out)"


def _format_point(point: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in point.items())


def enqueue_presets(experiment: Experiment, space: Space) -> list[dict[str, float]]:
    """`search.enqueue_presets` as full points over the space's dotted keys, tried first.

    Each entry names parameters by short name (beta, lambda1, alpha2, a λ's term) or dotted
    key; a parameter left out takes the experiment's own value when inside its range, else
    the range's middle. A value outside its range is a ConfigError.
    """
    points = []
    for index, entry in enumerate(experiment.search.enqueue_presets):
        point = {p.key: _own_value(experiment, p) for p in space.params}
        for name, value in entry.items():
            where = f"search.enqueue_presets[{index}].{name}"
            try:
                param = space[name]
            except KeyError:
                raise ConfigError(
                    f"{where}: not a searched parameter (searched: {', '.join(space.keys)})"
                ) from None
            if not param.contains(float(value)):
                raise ConfigError(
                    f"{where}: {value:g} is outside the searched range [{param.low:g}, "
                    f"{param.high:g}]"
                )
            point[param.key] = float(value)
        points.append(point)
    return points


def _own_value(experiment: Experiment, param: Param) -> float:
    """The experiment's value at `param.key` (a preset's default included), if in range."""
    node: Any = experiment.to_dict()
    parts = param.key.split(".")
    if parts[:2] in (["objective", "params"], ["objective", "lambdas"]):
        parts = [*parts[:2], param.name]
        if parts[1] == "params" and experiment.objective.preset:
            defaults = get_preset(experiment.objective.preset).params
            node["objective"]["params"] = {**defaults, **node["objective"]["params"]}
    for part in parts:
        node = node.get(part) if isinstance(node, Mapping) else None
    if isinstance(node, int | float) and not isinstance(node, bool) and param.contains(node):
        return float(node)
    return param.middle
