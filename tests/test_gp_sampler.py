"""`search.sampler: gp` asked for a batch: a population asks K points before any reports.

Optuna's GPSampler puts the trials still RUNNING into its batch acquisition (qLogEHVI), so K
points asked together must spread out; hidden from it (each told failed before the next ask,
as a sampler that ignores running trials would see them) the same sampler proposes one point
K times. Both sides run here, so the bound is shown to tell the two apart.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from test_study import family_study, tiny

from experiment.config import experiment_from_dict
from experiment.rung_values import ACQUISITION_EFFORT, RungAwareGP, as_told
from search.members import member_key
from search.space_config import parse_space

K = 6
SPREAD = 0.01  # min pairwise distance, in the unit box (λ in log): well apart, not one point
NAMES = ("nll", "mi")


def told(point: dict[str, float]) -> dict[str, float]:
    """A smooth made-up result with its best values inside the box, not on a corner."""
    alpha, lam = point["objective.params.alpha"], math.log10(point["objective.params.lambda"])
    nll = 1.4 + (alpha - 0.3) ** 2 + 0.02 * lam
    return {"nll": nll, "mi": 1.0 - (alpha + 0.2) ** 2 - 0.1 * lam}


def unit(points: list[dict[str, float]]) -> np.ndarray:
    """The points in the unit box of the space (λ on its log scale)."""
    space = parse_space(experiment_from_dict(tiny("gp")))
    rows = []
    for point in points:
        row = []
        for p in space.params:
            value, low, high = point[p.key], p.low, p.high
            if p.log:
                value, low, high = math.log(value), math.log(low), math.log(high)
            row.append((value - low) / (high - low))
        rows.append(row)
    return np.array(rows)


def min_distance(x: np.ndarray) -> float:
    gaps = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return float(gaps[np.triu_indices(len(x), 1)].min())


def batch(tmp_path: Path, seed: int, hide_running: bool) -> np.ndarray:
    """K points asked after 6 told results (the sampler models from 4 on: 12 samples)."""
    experiment = experiment_from_dict(tiny("gp", search={"num_samples": 12, "seed": seed}))
    study = family_study(experiment, tmp_path, sampler="gp")
    for i in range(6):
        study.tell(f"t{i}", "ok", told(study.ask(f"t{i}")), NAMES)
    points = []
    for k in range(K):
        points.append(study.ask("pop", k))
        if hide_running:  # failed, not refused: the GP itself proposes the next point
            study.tell(member_key("pop", k), "error", {}, NAMES)
    return unit(points)


@pytest.mark.parametrize("seed", [0, 1])
def test_points_asked_together_spread_out_where_a_blind_gp_repeats_one(
    seed: int, tmp_path: Path
) -> None:
    aware, blind = batch(tmp_path / "aware", seed, False), batch(tmp_path / "blind", seed, True)
    assert len({tuple(p) for p in aware}) == K
    assert min_distance(aware) > SPREAD
    assert min_distance(blind) < SPREAD  # the collapse the batch acquisition avoids


# --------------------------------------------------------------------------- pruned members


def pruned(x: float, values: list[float]) -> optuna.trial.FrozenTrial:
    """A trial stopped at a rung with `values` there, as `search.study` tells one."""
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params={"x": x},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        user_attrs={"values": values},
    )


def test_a_pruned_member_is_shown_complete_with_its_rung_values_only_when_finite() -> None:
    shown = as_told(pruned(0.3, [1.5, 2.0]))
    assert shown.state == optuna.trial.TrialState.COMPLETE and shown.values == [1.5, 2.0]
    assert shown.params == {"x": 0.3}
    for kept in (pruned(0.3, [math.nan, 2.0]), pruned(0.3, [])):
        assert as_told(kept).state == optuna.trial.TrialState.PRUNED
    done = optuna.trial.create_trial(
        values=[1.0, 1.0],
        params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
    )
    assert as_told(done) is done


def asked_after_pruned(sampler: optuna.samplers.BaseSampler, n: int = 4) -> list[float]:
    """x of `n` points asked after 12 members were stopped at a rung: their rung values say
    that x near 1 is best in both objectives (nll down, mi up)."""
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    for i in range(12):
        x = (i + 0.5) / 12
        study.add_trial(pruned(x, [2.0 - x, 3.0 * x]))
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    return [study.ask(space).params["x"] for _ in range(n)]


def test_the_gp_models_members_stopped_at_a_rung_where_optunas_gp_stays_random() -> None:
    """With every member pruned, Optuna's GPSampler has no COMPLETE trial and keeps drawing
    its start-up points (its independent sampler: the seed's random stream); the rung-aware
    GP fits on the rung values and asks at the good end."""
    plain = asked_after_pruned(optuna.samplers.GPSampler(seed=0, n_startup_trials=4))
    random = asked_after_pruned(optuna.samplers.RandomSampler(seed=0))
    assert plain == random
    aware = asked_after_pruned(RungAwareGP(seed=0, n_startup_trials=4))
    assert min(aware) > 0.9, aware


# --------------------------------------------------------------------------- acquisition effort


def test_the_acquisition_search_runs_with_the_effort_set_not_optunas_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`ACQUISITION_EFFORT` reaches the optimiser of the acquisition function: an Optuna whose
    GPSampler renamed or stopped reading these attributes fails here, not silently slower."""
    from optuna.samplers._gp import sampler as gp_module

    seen: list[tuple[int, int]] = []
    optim_mixed = gp_module.optim_mixed  # the name GPSampler calls through (a lazy import)
    optimise = optim_mixed.optimize_acqf_mixed  # loads it first: a later load would overwrite

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((kwargs["n_preliminary_samples"], kwargs["n_local_search"]))
        return optimise(*args, **kwargs)

    monkeypatch.setattr(optim_mixed, "optimize_acqf_mixed", recorded)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "GPSampler has no ..." fallback
        sampler = RungAwareGP(seed=0, n_startup_trials=4)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for i in range(5):
        x = (i + 0.5) / 5
        study.add_trial(
            optuna.trial.create_trial(
                values=[2.0 - x, 3.0 * x], params={"x": x}, distributions=space
            )
        )
    study.ask(space)
    effort = ACQUISITION_EFFORT
    assert seen == [(effort["_n_preliminary_samples"], effort["_n_local_search"])]
    assert seen[0] != (2048, 10)  # Optuna 5.0's defaults: the setting changed something
