"""A sampler that leaves a region the compiler refuses: the point after a refused one is random.

A point the compiler refuses is told to Optuna as failed and another is asked for
(`search.study`). A model-based sampler does not learn from failed trials: when its results
improve towards a refused region, the next ask fits the same model and lands in that region
again. Both TPE and Optuna's GPSampler did so fifty times in a row, which ends the search
(tests/test_study.py, the refusal test over every sampler). `RandomAfterRefusal` wraps such a
sampler: a trial asked right after a refused one takes all its parameters from a random
sampler, which leaves a region that `search.feasibility` has found to be only part of the box;
every other trial is the wrapped sampler's, unchanged.

The sampler table builds it lazily (`experiment.samplers`): the only module of this layer that
imports Optuna, and only for the samplers that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from experiment.status import REFUSED


class RandomAfterRefusal(BaseSampler):
    """`inner`, except that a trial asked right after a refused one is drawn at random."""

    def __init__(self, inner: BaseSampler, seed: int):
        self.inner = inner
        # a stream of its own: the inner sampler's start-up draws use `seed` already
        self.random = RandomSampler(seed=seed + 1)
        self.fallback_trial: int | None = None  # the trial number being drawn at random

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.fallback_trial = trial.number if follows_a_refusal(study, trial) else None
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial.number == self.fallback_trial:
            return {}  # each parameter then comes from sample_independent: random
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        sampler = self.random if trial.number == self.fallback_trial else self.inner
        return sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self.random.reseed_rng()


def follows_a_refusal(study: Study, trial: FrozenTrial) -> bool:
    """Whether the study's trial just before `trial` is a point the compiler refused."""
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    before = trial.number - 1
    return any(t.number == before and t.user_attrs.get("status") == REFUSED for t in failed)
