"""The start-up of a model-based sampler: how many points it asks at random, and the placed
start-up (`search.startup: orthogonal`, `search/startup.py`)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
from test_study import tiny, trials

from experiment.config import ConfigError, experiment_from_dict
from experiment.samplers import STARTUP_TOLD, SamplerInputs, startup_asked, startup_told
from search.plan import plan_search
from search.space_config import parse_space
from search.startup import orthogonal_array, startup_points
from search.study import make_sampler
from search.tune import _study


def random_asks(slots: int, told_needed: int, budget: int) -> int:
    """Brute force of a rolling search: `slots` points asked at once, then each told result
    asks the next; an ask is random while fewer than `told_needed` results are told."""
    asked = min(slots, budget)
    random = asked
    for told in range(1, budget - slots + 1):
        random += told < told_needed
    return random


@pytest.mark.parametrize(("slots", "budget"), [(1, 32), (2, 32), (8, 32), (8, 16), (4, 9)])
def test_the_start_up_counts_the_points_asked_before_a_result(slots: int, budget: int) -> None:
    """As many random asks as the start-up says, unless the first batch alone is more: then
    the batch and one more, while the model waits for its STARTUP_TOLD results."""
    told = startup_told(SamplerInputs(0, budget, asked_together=slots))
    want = max(startup_asked(budget), slots + STARTUP_TOLD - 1)
    assert random_asks(slots, told, budget) == want


def test_eight_slots_ask_ten_random_points_not_seventeen() -> None:
    """Counting told results only (Optuna's n_startup_trials = 10), 8 slots asked 17 of 32
    at random, which the benchmark's journals showed."""
    assert random_asks(8, 10, 32) == 17
    assert random_asks(8, startup_told(SamplerInputs(0, 32, asked_together=8)), 32) == 10


@pytest.mark.parametrize("factors", range(1, 8))
def test_the_array_has_strength_two(factors: int) -> None:
    """Brute force: every pair of columns meets every pair of levels equally often."""
    rows = orthogonal_array(factors)
    assert len(rows) == {1: 3, 2: 9, 3: 9, 4: 9}.get(factors, 27)
    assert all(len(r) == factors for r in rows)
    for i in range(factors):
        assert Counter(r[i] for r in rows) == {
            0: len(rows) // 3,
            1: len(rows) // 3,
            2: len(rows) // 3,
        }
    for i, j in itertools.combinations(range(factors), 2):
        pairs = Counter((r[i], r[j]) for r in rows)
        assert set(pairs) == set(itertools.product(range(3), repeat=2))
        assert set(pairs.values()) == {len(rows) // 9}


def test_two_parameters_get_the_full_grid() -> None:
    assert sorted(orthogonal_array(2)) == list(itertools.product(range(3), repeat=2))


def test_placed_points_sit_on_each_ranges_three_levels(tmp_path: Path) -> None:
    e = experiment_from_dict(tiny("startup", search={"num_samples": 30}))
    space = parse_space(e)
    points = startup_points(space, 9, seed=3)
    assert len(points) == 9
    for param in space.params:
        levels = param.grid(3)
        assert Counter(p[param.key] for p in points) == dict.fromkeys(levels, 3)
    assert startup_points(space, 9, seed=3) == points  # the seed decides
    assert startup_points(space, 9, seed=4) != points
    assert startup_points(space, 4, seed=3) == points[:4]  # a shorter start-up: first rows


def test_the_plan_enqueues_presets_then_the_placed_start_up(tmp_path: Path) -> None:
    e = experiment_from_dict(
        tiny(
            "startup",
            search={
                "num_samples": 30,
                "startup": "orthogonal",
                "enqueue_presets": [{"alpha": 0.5, "lambda": 100.0}],
            },
        )
    )
    plan = plan_search(e, storage_root=str(tmp_path))
    assert len(plan.points) == startup_asked(30) == 10  # the preset and 9 placed points
    assert plan.points[0] == {"objective.params.alpha": 0.5, "objective.params.lambda": 100.0}
    placed = startup_points(plan.space, 9, seed=e.seed)
    assert list(plan.points[1:]) == placed
    study = _study(plan)  # the search's own study, as a search builds it
    asked = []
    for i in range(10):
        asked.append(study.ask(f"t{i}"))
        study.tell(f"t{i}", "ok", {"nll": 1.5, "mi": float(i)}, plan.metrics)
    assert [{k: a[k] for k in plan.space.keys} for a in asked] == list(plan.points)
    assert len(trials(plan.study)) == 10


def test_a_grid_has_no_start_up_to_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.startup: orthogonal .* grid sampler"):
        experiment_from_dict(tiny("startup", search={"sampler": "grid", "startup": "orthogonal"}))
    with pytest.raises(ConfigError, match="search.startup"):
        experiment_from_dict(tiny("startup", search={"startup": "sobol"}))


@pytest.mark.parametrize(
    ("sampler", "population", "want"), [("tpe", 4, 3), ("gp", 4, 3), ("tpe", 1, 9)]
)
def test_the_search_tells_its_sampler_the_points_asked_together(
    sampler: str, population: int, want: int, tmp_path: Path
) -> None:
    """The plan's slots (population x max_concurrent 2) reach the sampler: 32 points with 8
    slots start modelling after 3 told results, one point a trial after 9. (Optuna keeps the
    count in a private attribute; this reads it.)"""
    e = experiment_from_dict(
        tiny(
            "startup",
            search={"sampler": sampler, "num_samples": 32, "population": population},
        )
    )
    built = make_sampler(plan_search(e, storage_root=str(tmp_path)))
    assert built.inner._n_startup_trials == want
