"""`search.sampler: tpe-gp`: TPE and the GP take turns on one study (`experiment.alternating`).

The rest of what a sampler must do (refusals, enqueued points, resume) runs for every row of
the table in tests/test_study.py, this one included.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_gp_sampler import NAMES, told, unit
from test_study import family_study, tiny

from experiment.alternating import Alternating
from experiment.config import experiment_from_dict
from experiment.rung_values import RungAwareGP
from experiment.samplers import SAMPLERS, SamplerInputs

DISTRIBUTION = optuna.distributions.FloatDistribution(0.0, 1.0)


class Constant(optuna.samplers.BaseSampler):
    """Proposes `value` for every parameter; remembers the trials it was told of."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.told: list[int] = []

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {"x": DISTRIBUTION}

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
        return {name: self.value for name in search_space}

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> float:
        return self.value

    def after_trial(self, study: Any, trial: Any, state: Any, values: Sequence[float] | None):
        self.told.append(trial.number)


def test_trial_n_is_proposed_by_sampler_n_mod_2_and_both_are_told_every_trial() -> None:
    first, second = Constant(0.25), Constant(0.75)
    study = optuna.create_study(sampler=Alternating([first, second]))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=5)
    assert [t.params["x"] for t in study.trials] == [0.25, 0.75, 0.25, 0.75, 0.25]
    assert first.told == second.told == [0, 1, 2, 3, 4]


def test_one_sampler_is_no_portfolio() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Alternating([Constant(0.5)])


def test_the_table_row_takes_tpe_then_the_gp() -> None:
    built = SAMPLERS["tpe-gp"].build(optuna.samplers, SamplerInputs(0, 32, {}, 8))
    kinds = [type(s) for s in built.inner.samplers]  # inside the refusal wrapper
    assert kinds == [optuna.samplers.TPESampler, RungAwareGP]


def test_the_start_up_never_asks_a_point_twice(tmp_path: Path) -> None:
    """12 points asked before any result (a population's start-up): the two samplers' random
    streams differ, else trial 2k + 1 repeats trial 2k."""
    experiment = experiment_from_dict(tiny("tg", search={"num_samples": 24, "seed": 3}))
    study = family_study(experiment, tmp_path, sampler="tpe-gp")
    points = unit([study.ask("pop", k) for k in range(12)])
    assert len({tuple(p) for p in points}) == 12


def test_after_the_start_up_the_gps_turns_are_the_gps_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once results are told, the odd trials come from the GP's acquisition, not its random
    start-up, and the even ones from TPE's model."""
    modelled: list[tuple[str, int]] = []
    for cls in (RungAwareGP, optuna.samplers.TPESampler):
        original = cls.sample_relative

        def spy(self: Any, study: Any, trial: Any, space: Any, _o: Any = original) -> Any:
            params = _o(self, study, trial, space)
            if params:
                modelled.append((type(self).__name__, trial.number))
            return params

        monkeypatch.setattr(cls, "sample_relative", spy)
    experiment = experiment_from_dict(tiny("tg", search={"num_samples": 16, "seed": 0}))
    study = family_study(experiment, tmp_path, sampler="tpe-gp")
    for i in range(12):
        study.tell(f"t{i}", "ok", told(study.ask(f"t{i}")), NAMES)
    late = [(name, n) for name, n in modelled if n >= 8]
    assert late, "no modelled asks after 8 told results"
    assert all((name == "RungAwareGP") == (n % 2 == 1) for name, n in late)
    assert {name for name, _ in late} == {"RungAwareGP", "TPESampler"}
