"""Samplers taking turns on one study: trial n is proposed by sampler n mod k (`tpe-gp`: k = 2).

On the 4-multiplier benchmark space most of the box collapses (mi ~ 0), and the front's
hypervolume is almost all in one small region at the MI cap. Rolling TPE and rolling GP each
missed that region on some seeds, different ones, and in different ways: TPE spread its
asks along the whole front and stayed at moderate MI; the GP, after a member collapsed at a
bound, kept away from that side of the box and refined a ridge elsewhere
(docs/RESULTS.md §3.3, ninth session). Taking turns, each sampler models every result,
including the other's, so a region one of them finds is the other's data too; a sampler that
would have stayed stuck gets told the points the other asked. Measured, it misses less often
and, when it misses, worse; its mean is no better than TPE's (the same section).

It is a portfolio over one shared history, as in GP-Hedge (Hoffman, Brochu and de Freitas,
UAI 2011), with a fixed round-robin instead of a learnt choice, and two model families
instead of two acquisition functions.

Both keep their own start-up. Each must have a random stream of its own: with one seed, both
start-up samplers draw the same points, and the start-up asks each point twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


class Alternating(BaseSampler):
    """Trial n is `samplers[n % len(samplers)]`'s, all of its parameters; every sampler is
    told every trial that ends."""

    def __init__(self, samplers: Sequence[BaseSampler]):
        if len(samplers) < 2:
            raise ValueError("alternating needs at least two samplers")
        self.samplers = list(samplers)

    def turn(self, trial: FrozenTrial) -> BaseSampler:
        return self.samplers[trial.number % len(self.samplers)]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.turn(trial).before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.turn(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.turn(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, name: str, distribution: BaseDistribution
    ) -> Any:
        return self.turn(trial).sample_independent(study, trial, name, distribution)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        for sampler in self.samplers:
            sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in self.samplers:
            sampler.reseed_rng()
