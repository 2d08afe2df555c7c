"""Score-function gradients for Bernoulli x ~ p(x|z) against the exact gradient of a model small
enough to enumerate: 3 pixels (8 images), 4 latent values, every expectation a finite sum.

The score-function (likelihood-ratio) estimate is unbiased: its mean over 20,000 draws matches
the exact gradient within Monte Carlo error. The straight-through option is not: its gradient is
the relaxed one, off by tens of per cent here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import write_idx_dir
from test_train import tiny
from torch import Tensor

from objectives.config import ModelConfig
from objectives.divergences import AdversarialDivergence, MaximumMeanDiscrepancy
from objectives.networks import Bernoulli, Discriminator, InfoAEModel
from objectives.record import ForwardRecord, ep_log_posterior
from objectives.stacked import StackedModel
from training.trainer import Trainer

Z = torch.tensor([[-1.0], [0.0], [0.5], [1.5]])  # the latent values, equally likely
IMAGES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # (8, 3)
REPEATS, BATCHES = 1000, 5  # 4000 draws a batch, 5 batches: the spread gives the error


def small_model() -> StackedModel:
    """A population of one: the record's model."""
    torch.manual_seed(0)
    return StackedModel([InfoAEModel(3, ModelConfig(hidden=8, layers=1, z_dim=1), "bernoulli")])


def flat_grad(value: Tensor, model: StackedModel) -> Tensor:
    grads = torch.autograd.grad(value.sum(), list(model.decoder.parameters()))
    return torch.cat([g.flatten() for g in grads])


def p_of_images(model: StackedModel) -> Tensor:
    """p(x|z) for every image and latent value, (4, 8)."""
    logits = model.likelihood_at(Z[None]).logits[0]  # (4, 3)
    table = Bernoulli(logits.unsqueeze(1).expand(4, 8, 3)).log_prob(IMAGES.expand(4, 8, 3))
    return torch.exp(table)


# each case: (name, the estimate's surrogate from a record, the exact expectation by enumeration)
def ep_posterior_case(model: StackedModel) -> tuple[Callable, Callable]:
    def surrogate(record: ForwardRecord) -> Tensor:
        return ep_log_posterior(record)

    def exact() -> Tensor:  # E_z Σ_x p(x|z) log q(z|x)
        posterior = model.posterior(IMAGES[None])
        log_q = torch.stack([posterior.log_prob(z.expand(1, 8, 1))[0] for z in Z])
        return (p_of_images(model) * log_q.detach()).sum(1).mean()

    return surrogate, exact


def js_case(model: StackedModel) -> tuple[Callable, Callable]:
    torch.manual_seed(1)
    discriminator = Discriminator(3, ModelConfig(discriminator_hidden=8, layers=1))
    divergence = AdversarialDivergence("JS", [discriminator])
    data = torch.tensor([[1.0, 0.0, 1.0]]).expand(1, len(Z) * REPEATS, 3)

    def surrogate(record: ForwardRecord) -> Tensor:
        out = divergence(data, record.x_p, per_sample=True)
        return out.surrogate + record.score_term(out.p_values)

    def exact() -> Tensor:  # the p side of log 2 - ½(BCE_q + BCE_p): -½ E_p softplus(r(x))
        logits = divergence.logits(IMAGES[None])[0]
        values = -0.5 * torch.nn.functional.softplus(logits).detach()
        return (p_of_images(model) * values).sum(1).mean()

    return surrogate, exact


def mmd_case(model: StackedModel) -> tuple[Callable, Callable]:
    mmd = MaximumMeanDiscrepancy(3, "imq")
    pair = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    data = pair.repeat(len(Z) * REPEATS // 2, 1)[None]

    def surrogate(record: ForwardRecord) -> Tensor:
        out = mmd(data, record.x_p, per_sample=True)
        return out.surrogate + record.score_term(out.p_values, baseline=False)

    def exact() -> Tensor:  # E_{y,y'~m} k(y, y') - 2 E_{x~data, y~m} k(x, y), m = E_z p(x|z)
        m, c = p_of_images(model).mean(0), mmd.scale  # (8,); IMQ with C = 2 · 3
        k = c / (c + torch.cdist(IMAGES, IMAGES).pow(2))
        to_data = (c / (c + torch.cdist(IMAGES, pair).pow(2))).mean(1)
        return m @ k @ m - 2 * (m * to_data).sum()

    return surrogate, exact


CASES = {"E_p[log q(z|x)]": ep_posterior_case, "JS(q(x)||p(x))": js_case, "MMD": mmd_case}


def monte_carlo(model: StackedModel, surrogate: Callable, x_gradient: str) -> tuple[Tensor, Tensor]:
    """(mean gradient, its standard error) over BATCHES batches of 4 × REPEATS draws."""
    generator = torch.Generator().manual_seed(2)
    grads = []
    for _ in range(BATCHES):
        dummy = torch.zeros(1, len(Z) * REPEATS, 3)
        noise = {
            "z_p": Z.repeat(REPEATS, 1)[None],  # the enumerated latent values
            "x_p": torch.rand(dummy.shape, generator=generator),  # x ~ p(x|z)'s uniforms
        }
        record = ForwardRecord(model, dummy, noise, x_gradient=x_gradient)
        grads.append(flat_grad(surrogate(record), model))
    stacked = torch.stack(grads)
    return stacked.mean(0), stacked.std(0) / BATCHES**0.5


@pytest.mark.parametrize("case", list(CASES))
def test_score_function_gradient_is_unbiased_and_straight_through_is_not(case: str) -> None:
    model = small_model()
    surrogate, exact = CASES[case](model)
    truth = flat_grad(exact(), model)
    score, error = monte_carlo(model, surrogate, "score-function")
    assert ((score - truth).abs() <= 4 * error + 0.02 * truth.abs().max()).all(), (
        score,
        truth,
        error,
    )
    straight, _ = monte_carlo(model, surrogate, "straight-through")
    bias = float((straight - truth).norm() / truth.norm())
    assert bias > 0.1, bias  # measured: see the module docstring


def test_a_preset_trains_with_score_function_gradients_on_binary_images(tmp_path: Path) -> None:
    idx_dir = write_idx_dir(tmp_path, train=64, test=32)
    objective = {"preset": "infogan", "x_gradient": "score-function"}
    trainer = Trainer(tiny(data_dir=idx_dir, objective=objective, train={"threads": 1}))
    before = [p.detach().clone() for p in trainer.model.decoder.parameters()]
    trainer.train_steps(10)
    assert trainer.members[0].status == "running"
    after = list(trainer.model.decoder.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(after, before, strict=True))
