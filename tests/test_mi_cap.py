"""The MI cap on H(x) - distortion (`objective.mi_upper_bound_on: distortion`, Appendix C.1;
objectives/caps.py) beside the rate cap: past the cap an information-maximising β-VAE is the
ELBO scaled by β, below it the β-VAE, each member against its own cap; and its refusals."""

from __future__ import annotations

import math

import pytest
import torch

from experiment.config import ConfigError, experiment_from_dict
from objectives.config import ModelConfig, ObjectiveConfig
from objectives.loss import FamilyLoss
from objectives.networks import InfoAEModel
from objectives.record import eq_log_likelihood
from objectives.stacked import StackedModel
from training.members import apart
from training.mog import MOG_ENTROPY

BETA = 0.5
ELBO = {"E_q[log p(x|z)]": -1.0, "E_q[log q(z|x)]": 1.0, "E_q[log p(z)]": -1.0}
BETA_VAE = {"E_q[log p(x|z)]": -1.0, "E_q[log q(z|x)]": BETA, "E_q[log p(z)]": -BETA}


def population(caps: list[float | None], forms=None) -> FamilyLoss:
    torch.manual_seed(0)
    models = [InfoAEModel(1, ModelConfig(hidden=16, z_dim=1), "gaussian") for _ in caps]
    objectives = [ObjectiveConfig(mi_upper_bound=c, mi_upper_bound_on="distortion") for c in caps]
    forms = forms or [BETA_VAE] * len(caps)
    return FamilyLoss(forms, StackedModel(models), objectives, [{}] * len(caps), MOG_ENTROPY)


def batch(k: int) -> torch.Tensor:
    return torch.randn(k, 32, 1, generator=torch.Generator().manual_seed(1)) * 0.6


def gradients(loss: FamilyLoss, member: int) -> list[torch.Tensor]:
    out = loss(batch(len(loss.model)), [torch.Generator().manual_seed(2 + k) for k in range(2)])
    return torch.autograd.grad(out.losses["model"][member], list(loss.model.parameters()))


def test_past_the_cap_the_beta_vae_is_the_scaled_elbo_and_below_it_itself() -> None:
    probe = population([None, None])
    record = probe.record(batch(2), [torch.Generator().manual_seed(2 + k) for k in range(2)])
    information = MOG_ENTROPY + eq_log_likelihood(record).detach()  # H(x) - D, (2,)
    caps = [float(information[0]) - 1.0, float(information[1]) + 1.0]  # member 0 past it
    capped = population(caps)
    out = capped(batch(2), [torch.Generator().manual_seed(2 + k) for k in range(2)])
    penalty = out.breakdown["mi_upper_bound_penalty"]
    assert math.isclose(float(penalty[0]), (1 - BETA) * 1.0, rel_tol=1e-5)  # -α2 (H - D - C)
    assert float(penalty[1]) == 0.0
    elbo, free = population([None, None], [ELBO, ELBO]), population([None, None])
    for a, b in zip(gradients(capped, 0), gradients(elbo, 0), strict=True):
        torch.testing.assert_close(a, BETA * b, rtol=1e-5, atol=1e-7)
    for a, b in zip(gradients(capped, 1), gradients(free, 1), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    reaches_decoder = gradients(capped, 0)[len(list(capped.model.encoder.parameters()))]
    assert reaches_decoder.abs().sum() > 0


def test_the_cap_on_distortion_is_refused_without_a_known_data_entropy() -> None:
    objective = {"preset": "beta-vae", "beta": 0.5, "mi_upper_bound": 2.0}
    with pytest.raises(ConfigError, match="^objective.mi_upper_bound_on: distortion") as error:
        experiment_from_dict(
            {
                "dataset": {"name": "mnist", "data_dir": "."},
                "objective": objective | {"mi_upper_bound_on": "distortion"},
            }
        )
    assert "\n" not in str(error.value)
    rate = experiment_from_dict({"objective": objective})
    distortion = experiment_from_dict(
        {"objective": objective | {"mi_upper_bound_on": "distortion"}}
    )
    assert apart(rate, distortion) == "members differ in objective.mi_upper_bound_on"
