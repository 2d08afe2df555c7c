"""A GP that learns from members stopped at a rung: their last values enter its model.

Optuna's GPSampler fits its Gaussian processes on COMPLETE trials only. Under successive
halving (`search.scheduler: halving`) most members end PRUNED at a rung, and Optuna keeps no
values for a pruned multi-objective trial, so the GP never sees them: on the 4-multiplier
benchmark space 9 of 32 members completed, fewer than the GP's 10 start-up trials, and the
"GP" search stayed random to its end (docs/RESULTS.md §3.3). TPE does not have this blind
spot (it ranks pruned trials in its "above" set).

`RungAwareGP` shows the GP each pruned member as if it had completed with the values it had
at its rung (`search.study` keeps them in the user attribute `PRUNED_VALUES_ATTR`). That is
what BOHB does with its lower budgets (Falkner et al., ICML 2018): a model fitted on the
values a stopped run reached. A member stopped at a rung was dominated there, so its rung values are
the best evidence there is about its point; a collapsed point (mi ≈ 0) at 1/9 of its steps
stays collapsed at the end. The front, trials.csv and the study's own states are unchanged:
only the GP's view of the trials is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Container
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import GPSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from experiment.status import PRUNED_VALUES_ATTR


def as_told(trial: FrozenTrial) -> FrozenTrial:
    """A pruned trial with finite rung values, as a COMPLETE trial with those values; any
    other trial unchanged."""
    values = trial.user_attrs.get(PRUNED_VALUES_ATTR)
    if trial.state != TrialState.PRUNED or not isinstance(values, list) or not values:
        return trial
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return trial
    return FrozenTrial(
        number=trial.number,
        state=TrialState.COMPLETE,
        value=None,
        values=[float(v) for v in values],
        datetime_start=trial.datetime_start,
        datetime_complete=trial.datetime_complete,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=trial.user_attrs,
        system_attrs=trial.system_attrs,
        intermediate_values=trial.intermediate_values,
        trial_id=trial._trial_id,
    )


class _PrunedAsTold:
    """The study as the GP reads it: every pruned member with rung values looks COMPLETE."""

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        everything = self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)
        shown = [as_told(t) for t in everything]
        return [t for t in shown if states is None or t.state in states]


# How hard each ask optimises the acquisition function (GPSampler's own attributes; its defaults
# 2048 and 10). With 7 members running, a default ask took a third of a rolling GP search's
# wall time on the 4-multiplier benchmark: its quasi-random sweep and local searches, not the
# fit (docs/BENCHMARKS.md, "The GP's asks"). A 4-D box needs fewer restarts than that.
ACQUISITION_EFFORT = {"_n_preliminary_samples": 512, "_n_local_search": 4}


class RungAwareGP(GPSampler):
    """Optuna's GPSampler, fitted on the completed members and the pruned ones' rung values
    (its search space, too, is inferred from both), with a cheaper acquisition search."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, value in ACQUISITION_EFFORT.items():
            if not hasattr(self, name):  # renamed by an Optuna upgrade: say so, keep its default
                message = f"GPSampler has no {name}; its default acquisition effort is used"
                warnings.warn(message, stacklevel=2)
                continue
            setattr(self, name, value)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return super().infer_relative_search_space(_PrunedAsTold(study), trial)  # type: ignore[arg-type]

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(_PrunedAsTold(study), trial, search_space)  # type: ignore[arg-type]
