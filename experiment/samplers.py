"""The samplers `search.sampler` may name: one table, one row per sampler.

The table drives the experiment file's check (`experiment.config`: an unknown name is one
`ConfigError` listing these), the search's `make_sampler` (`search.study`), the plan's grid
size (`search.plan`) and the tests. A row says how to build the Optuna sampler from
`optuna.samplers` and what the search must know of it; this layer does not import Optuna
(the search passes the module in); the wrapper that takes the model-based samplers out of a
refused region (`experiment.refusals`), the GP that learns from pruned members
(`experiment.rung_values`), the samplers taking turns (`experiment.alternating`) and the
picklable NSGA-II (`experiment.nsga2`) are imported only when one is built. A new sampler
is one row (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class SamplerInputs:
    """What a sampler is built from: the seed, the trials it will propose, (for a grid
    sampler) the values of each searched dotted key, and how many points the search asks
    before it can have told one result (every member slot of every concurrent trial)."""

    seed: int
    num_samples: int
    grid: Mapping[str, list[float]] = field(default_factory=dict)
    asked_together: int = 1


@dataclass(frozen=True)
class Sampler:
    name: str
    build: Callable[[Any, SamplerInputs], Any]  # (optuna.samplers, inputs) -> a BaseSampler
    grid: bool = False  # proposes a full grid: num_samples is rounded to one (search.plan)
    # of num_samples points, how many it asks before it models any result: a start-up, a
    # first generation, or all of them (random, grid); a rolling trial staggers only the slots
    # whose first point comes after these (`search.rolling.slot_starts`)
    unmodelled: Callable[[int], int] = lambda n: n


def generation(num_samples: int) -> int:
    """NSGA-II's population size: a third of the budget, 4 to 50."""
    return max(4, min(50, num_samples // 3))


STARTUP_MAX = 10  # random points asked before a model-based sampler models, at most
STARTUP_TOLD = 2  # results a model needs, at least


def startup_asked(num_samples: int) -> int:
    """Random points a search asks before its sampler models: a third of a small budget,
    2 to STARTUP_MAX."""
    return max(2, min(STARTUP_MAX, num_samples // 3))


def startup_told(inputs: SamplerInputs) -> int:
    """Optuna's `n_startup_trials`, which counts results told, for `startup_asked` points
    asked: the points asked blind together (a rolling search's first batch of member slots)
    are start-up already. Counting told results only, 8 slots and 10 start-up trials asked
    17 of 32 points at random, since slots kept asking while the 10th result trained
    (docs/SEARCH.md)."""
    blind = max(0, inputs.asked_together - 1)  # asked while the first told result trained
    return max(STARTUP_TOLD, startup_asked(inputs.num_samples) - blind)


SAMPLERS: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler(
            "tpe",
            lambda o, a: _random_after_refusal(_tpe(o, a), a.seed),
            unmodelled=startup_asked,
        ),
        Sampler(
            "nsga2",
            lambda o, a: _nsga2(seed=a.seed, population_size=generation(a.num_samples)),
            unmodelled=generation,
        ),
        Sampler("random", lambda o, a: o.RandomSampler(seed=a.seed)),
        # Gaussian-process BO (logEHVI): the trials still running enter its batch acquisition
        # (qLogEHVI), so points asked together spread out without a liar (docs/SEARCH.md);
        # members stopped at a rung enter its model with their rung values
        Sampler(
            "gp",
            lambda o, a: _random_after_refusal(_rung_aware_gp(a), a.seed),
            unmodelled=startup_asked,
        ),
        # TPE and the GP taking turns, each modelling every result (`experiment.alternating`):
        # the two miss the front's best region on different seeds
        Sampler(
            "tpe-gp",
            lambda o, a: _random_after_refusal(_tpe_and_gp(o, a), a.seed),
            unmodelled=startup_asked,
        ),
        Sampler("grid", lambda o, a: o.GridSampler(dict(a.grid), seed=a.seed), grid=True),
    )
}


def _tpe(optuna_samplers: Any, inputs: SamplerInputs) -> Any:
    """Multivariate TPE with a constant liar: points asked together spread out."""
    return optuna_samplers.TPESampler(
        seed=inputs.seed,
        multivariate=True,
        constant_liar=True,
        n_startup_trials=startup_told(inputs),
    )


def _tpe_and_gp(optuna_samplers: Any, inputs: SamplerInputs) -> Any:
    """TPE on even trials, the GP on odd ones. The GP draws from a stream of its own (seed + 2;
    the refusal wrapper has seed + 1): on one seed both start-ups ask the same points."""
    from experiment.alternating import Alternating  # imports Optuna: only when built

    gp = _rung_aware_gp(replace(inputs, seed=inputs.seed + 2))
    return Alternating([_tpe(optuna_samplers, inputs), gp])


def _nsga2(**options: Any) -> Any:
    """Optuna's NSGA-II, made picklable (`experiment.nsga2`: Optuna 5.1's holds a lock)."""
    from experiment.nsga2 import NSGAIISampler  # imports Optuna: only when built

    return NSGAIISampler(**options)


def _rung_aware_gp(inputs: SamplerInputs) -> Any:
    """Optuna's GPSampler fitted on pruned members' rung values too (`experiment.rung_values`)."""
    from experiment.rung_values import RungAwareGP  # imports Optuna: only when built

    return RungAwareGP(seed=inputs.seed, n_startup_trials=startup_told(inputs))


def _random_after_refusal(sampler: Any, seed: int) -> Any:
    """`sampler`, with the point after a refused one drawn at random (`experiment.refusals`)."""
    from experiment.refusals import RandomAfterRefusal  # imports Optuna: only when built

    return RandomAfterRefusal(sampler, seed)
