"""The per-term contract: every tractable term of the registry, estimated by the trainer's path
for a population of one (the stacked networks, one record over (1, B, ·) tensors), equals its
plain formula written out here with `nn.Linear` networks and the same noise.

Two kernels compute each number (`baddbmm` on the stacked (1, in, out) weight against
`nn.Linear`'s addmm), so they agree within float32 rounding: TOLERANCE, relative and absolute,
is a few hundred float32 ulps of these O(1-10) values; differences seen are ~1e-7.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from objectives.config import ModelConfig, ObjectiveConfig
from objectives.estimators import ESTIMATORS
from objectives.implicit import ADVERSARY_TERM
from objectives.loss import FamilyLoss, build_discriminators
from objectives.mmd import mmd_unbiased
from objectives.networks import LOG_2PI, InfoAEModel
from objectives.record import ForwardRecord
from objectives.stacked import StackedModel

TOLERANCE = 2e-5
CONFIG = ModelConfig(hidden=16, layers=2, z_dim=3, discriminator_hidden=8)
X_DIM, BATCH = 5, 12


def setup(term: str, likelihood: str, implicit: bool = False, seed: int = 0):
    """A plain model and its discriminators, the trainer's loss for {term: 1}, one record."""
    torch.manual_seed(seed)
    config = dataclasses.replace(CONFIG, encoder="implicit" if implicit else "gaussian")
    model = InfoAEModel(X_DIM, config, likelihood)
    discriminators = build_discriminators([term], model)
    loss = FamilyLoss([{term: 1.0}], StackedModel([model]), [ObjectiveConfig()], [discriminators])
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, X_DIM, generator=g)
    if likelihood == "bernoulli":
        x = (torch.rand(BATCH, X_DIM, generator=g) < 0.5).float()
    record = loss.record(x[None], [torch.Generator().manual_seed(seed + 2)])
    return model, discriminators, loss, record


def plain_samples(model: InfoAEModel, record: ForwardRecord) -> dict[str, Tensor]:
    """x, z ~ q(z|x), z ~ p(z), x ~ p(x|z) by the plain networks from the record's noise."""
    x, noise = record.x[0], {k: v[0] for k, v in record.noise.items()}
    out = {"x": x}
    if "z_q" in noise:
        if model.implicit:
            out["z_q"] = model.encoder.net(torch.cat([x, noise["z_q"]], -1))
        else:
            mu, logvar = model.encoder.encode(x)
            out["z_q"] = mu + torch.exp(0.5 * logvar) * noise["z_q"]
    if "z_p" in noise:
        out["z_p"] = noise["z_p"]
    if "x_p" in noise:
        dist = model.decoder(noise["z_p"])
        if model.likelihood == "gaussian":
            out["x_p"] = dist.mean + torch.exp(0.5 * dist.logvar) * noise["x_p"]
        else:  # the score-function default: a hard draw
            out["x_p"] = (noise["x_p"] < torch.sigmoid(dist.logits)).float()
    return out


def pair(samples: dict[str, Tensor], variables: str) -> tuple[Tensor, Tensor]:
    x, z_q, z_p, x_p = (samples.get(k) for k in ("x", "z_q", "z_p", "x_p"))
    if variables == "x":
        return x, x_p
    if variables == "z":
        return z_q, z_p
    if variables == "x;z":
        return torch.cat([x, z_q], -1), torch.cat([x, z_p], -1)
    return torch.cat([x, z_q], -1), torch.cat([x_p, z_p], -1)


def plain_value(term: str, model: InfoAEModel, discriminators, record: ForwardRecord) -> Tensor:
    """The term's estimate, written out for one member with plain modules."""
    s = plain_samples(model, record)
    x = s["x"]
    estimator = ESTIMATORS[term]
    if estimator.divergence == "MMD":
        return mmd_unbiased(*pair(s, estimator.variables), "imq")
    if estimator.divergence is not None:
        q, p = pair(s, estimator.variables)
        net = discriminators[term].net
        r_q, r_p = net(q).squeeze(-1), net(p).squeeze(-1)
        if estimator.divergence == "KL(q||p)":
            return r_q.mean()
        if estimator.divergence == "KL(p||q)":
            return -r_p.mean()
        return math.log(2) - 0.5 * (F.softplus(-r_q).mean() + F.softplus(r_p).mean())
    constant = -0.5 * model.z_dim * (LOG_2PI + 1.0)
    if term.startswith("E_p"):
        entropy = model.decoder(s["z_p"]).entropy().mean() if "z_p" in s else None
        if term == "E_p[log p(z)]":
            return torch.tensor(constant)
        if term == "E_p[log p(x|z)]":
            return -entropy
        if term == "E_p[log p(x,z)]":
            return constant - entropy
        return model.encoder(s["x_p"]).log_prob(s["z_p"]).mean()  # E_p[log q(z|x)]
    if model.implicit:
        prior = (-0.5 * (LOG_2PI + s["z_q"] ** 2).sum(-1)).mean()
    else:
        mu, logvar = model.encoder.encode(x)
        prior = (-0.5 * (LOG_2PI + mu**2 + torch.exp(logvar)).sum(-1)).mean()
    if term == "E_q[log p(z)]":
        return prior
    if term == "E_q[log q(z|x)]":
        return -model.encoder(x).entropy().mean()
    likelihood = model.decoder(s["z_q"]).log_prob(x).mean()
    return likelihood if term == "E_q[log p(x|z)]" else likelihood + prior


TERMS = [t for t in ESTIMATORS if t != ADVERSARY_TERM]


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
@pytest.mark.parametrize("term", TERMS)
def test_each_term_at_one_member_is_its_plain_formula(term: str, likelihood: str) -> None:
    model, discriminators, loss, record = setup(term, likelihood)
    with torch.no_grad():
        ours = loss.step(record).breakdown[term]
        theirs = plain_value(term, model, discriminators, record)
    assert ours.shape == (1,)
    torch.testing.assert_close(ours[0], theirs.float(), rtol=TOLERANCE, atol=TOLERANCE)


@pytest.mark.parametrize("term", [ADVERSARY_TERM, "E_q[log p(z)]", "E_q[log p(x|z)]"])
def test_the_implicit_encoders_terms_are_their_plain_formulas(term: str) -> None:
    model, discriminators, loss, record = setup(term, "gaussian", implicit=True)
    assert record.noise["z_q"].shape == (1, BATCH, CONFIG.noise_dim)  # ε, not z
    with torch.no_grad():
        ours = loss.step(record).breakdown[term][0]
        theirs = plain_value(term, model, discriminators, record)
    torch.testing.assert_close(ours, theirs.float(), rtol=TOLERANCE, atol=TOLERANCE)


def test_the_contract_can_fail() -> None:
    """A wrong plain formula (the other KL direction) is caught."""
    term = "KL(q(z)||p(z))"
    model, discriminators, loss, record = setup(term, "gaussian")
    with torch.no_grad():
        ours = loss.step(record).breakdown[term][0]
        q, p = pair(plain_samples(model, record), "z")
        wrong = -discriminators[term].net(p).mean()
    assert not torch.allclose(ours, wrong, rtol=TOLERANCE, atol=TOLERANCE)
