"""Dual ascent on honest quantities (objectives/dual.py): what can be constrained, and a
LagVAE-style run (Zhao et al. 2018) that meets two constraints with multipliers that settle."""

from __future__ import annotations

import pytest
from test_train import tiny

from objectives.config import ConfigError
from objectives.dual import constraint_form
from training.trainer import Trainer


@pytest.mark.parametrize(
    ("name", "form"),
    [
        ("distortion", {"E_q[log p(x|z)]": -1.0}),
        ("rate", {"E_q[log q(z|x)]": 1.0, "E_q[log p(z)]": -1.0}),
        ("KL( q(z) || p(z) )", {"KL(q(z)||p(z))": 1.0}),
        ("KL(p(x)||q(x))", {"KL(p(x)||q(x))": 1.0}),
        ("MMD(p(z)||q(z))", {"MMD(q(z)||p(z))": 1.0}),
        ("JS(q(x,z)||p(x,z))", {"JS(q(x,z)||p(x,z))": 1.0}),
    ],
)
def test_honest_quantities_are_constrained_by_their_exact_estimate(name: str, form: dict) -> None:
    assert constraint_form(name)[1] == form


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("KL(q(x,z)||p(x,z))", "drops a constant"),  # distortion + rate - H_q(x)
        ("KL(q(x|z)||p(x|z))", "drops a constant"),
        ("KL(q(z|x)||p(z|x))", "drops a constant"),
        ("I_q", "mutual information"),
        ("JS(q(x|z)||p(x|z))", "intractable"),
        ("loss", "objective.dual.slack.loss"),
    ],
)
def test_dishonest_quantities_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        constraint_form(name)
    with pytest.raises(ConfigError, match="objective.dual.slack"):
        objective = {"preset": "elbo", "mode": "lagrangian", "dual": {"slack": {name: 1}}}
        Trainer(tiny(objective=objective))


def test_lagvae_style_run_meets_distortion_and_mmd_constraints_and_lambda_settles() -> None:
    """InfoVAE with β = 2 wants less information than distortion <= 0.5 allows (it sits near
    0.6 nats): λ on distortion must rise from λ_min and hold it there, while λ on
    MMD(q(z)||p(z)) <= 5e-4 moves from the preset's 1. Tolerances: 0.1 nats of distortion and
    0.002 of MMD (the one-sample evaluation noise on 1000 points); λ settles: over the last
    three evaluations (steps 2000-3000) each λ stays within 15 % of its mean."""
    epsilon = {"distortion": 0.5, "MMD(q(z)||p(z))": 5e-4}
    experiment = tiny(
        dataset={"name": "mog", "train_size": 5000, "test_size": 1000},
        model={"hidden": 32, "z_dim": 1},
        objective={
            "preset": "infovae",
            "beta": 2.0,
            "lambda": 1.0,
            "mode": "lagrangian",
            "dual": {"slack": epsilon, "lr": 0.1},
        },
        train={"steps": 3000, "eval_every": 500, "batch_size": 100, "lr": 3e-3, "threads": 1},
    )
    history = [metrics for (metrics,) in Trainer(experiment).run()]
    final = history[-1]
    assert final["status"] == "ok"
    assert final["distortion"] <= epsilon["distortion"] + 0.1, final["distortion"]
    assert final["mmd_qz_pz"] <= epsilon["MMD(q(z)||p(z))"] + 0.002, final["mmd_qz_pz"]
    for term in epsilon:
        late = [m[f"lambda/{term}"] for m in history[-3:]]
        mean = sum(late) / len(late)
        assert max(late) - min(late) <= 0.15 * mean, (term, late)
    assert final["lambda/distortion"] > 0.5  # it bound: λ rose from λ_min = 0.001
