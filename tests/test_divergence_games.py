"""The adversarial games against closed forms: JS's model-side gradient, discriminator steps.

q = N(μ, 1), p = N(0, 1) in one dimension. The optimal discriminator of the JS game has logit
r*(v) = log q(v)/p(v) = μ v - μ²/2, a linear function: a discriminator with no hidden layer
holds it exactly, so the model-side gradient can be checked at the game's optimum.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_train import tiny

from experiment.config import TrainConfig
from objectives.config import ModelConfig
from objectives.divergences import AdversarialDivergence, density_ratio_kl
from objectives.networks import Discriminator
from training.trainer import Trainer

MU = 1.0


def js_by_quadrature(mu: float) -> float:
    """JS(N(μ,1)||N(0,1)) = ½ KL(q||m) + ½ KL(p||m), m = (q + p)/2, by the trapezoid rule."""
    v = torch.linspace(-12.0, 12.0 + mu, 200_001, dtype=torch.float64)
    q = torch.exp(-0.5 * (v - mu) ** 2) / math.sqrt(2 * math.pi)
    p = torch.exp(-0.5 * v**2) / math.sqrt(2 * math.pi)
    m = 0.5 * (q + p)
    integrand = 0.5 * (q * torch.log(q / m) + p * torch.log(p / m))
    return float(torch.trapezoid(integrand, v))


def optimal_js(js_gradient: str, mu: float = MU) -> AdversarialDivergence:
    discriminator = Discriminator(1, ModelConfig(layers=0))
    divergence = AdversarialDivergence("JS", [discriminator], js_gradient)
    linear = divergence.discriminator.net[0]  # one member's stacked linear layer
    with torch.no_grad():
        linear.member_weight(0).fill_(mu)
        linear.member_bias(0).fill_(-(mu**2) / 2)
    return divergence


def surrogate_gradient(js_gradient: str, n: int = 400_000) -> tuple[float, float]:
    """d surrogate / dμ with q samples μ + ε, and its Monte Carlo standard error."""
    g = torch.Generator().manual_seed(0)
    divergence = optimal_js(js_gradient)
    mu = torch.tensor(MU, dtype=torch.float64, requires_grad=True)
    grads = []
    for _ in range(8):  # 8 independent batches: the spread gives the standard error
        q = mu + torch.randn(1, n // 8, 1, generator=g, dtype=torch.float64)
        p = torch.randn(1, n // 8, 1, generator=g, dtype=torch.float64)
        (grad,) = torch.autograd.grad(divergence.double()(q, p).surrogate.sum(), mu)
        grads.append(float(grad))
    values = torch.tensor(grads)
    return float(values.mean()), float(values.std()) / math.sqrt(len(values))


def test_the_optimal_discriminator_estimates_js_exactly() -> None:
    g = torch.Generator().manual_seed(1)
    q = MU + torch.randn(1, 200_000, 1, generator=g, dtype=torch.float64)
    p = torch.randn(1, 200_000, 1, generator=g, dtype=torch.float64)
    with torch.no_grad():
        estimate = float(optimal_js("minimax").double()(q, p).estimate)
    assert estimate == pytest.approx(js_by_quadrature(MU), abs=3e-3)


def test_minimax_js_gradient_is_the_gradient_of_js_and_non_saturating_is_not() -> None:
    h = 1e-4
    exact = (js_by_quadrature(MU + h) - js_by_quadrature(MU - h)) / (2 * h)  # 0.20 at μ = 1
    minimax, error = surrogate_gradient("minimax")
    assert abs(minimax - exact) < max(4 * error, 0.01 * abs(exact)), (minimax, exact, error)
    non_saturating, _ = surrogate_gradient("non-saturating")
    assert abs(non_saturating - exact) > 0.2 * abs(exact), (non_saturating, exact)


# --------------------------------------------------------------------------- disc_steps


def test_the_default_disc_steps_estimates_a_density_ratio_kl_within_5_percent() -> None:
    """KL(N(1,1)||N(0,1)) = ½ by the density-ratio discriminator with the trainer's defaults,
    `train.disc_steps` updates per model step for 1000 model steps; the estimate is read as
    a researcher reads a logged curve: averaged over the last 200 model steps."""
    train, model = TrainConfig(), ModelConfig()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    divergence = AdversarialDivergence("KL(q||p)", [Discriminator(1, model)])
    optimizer = torch.optim.Adam(divergence.parameters(), lr=train.discriminator_lr)
    held_out = torch.randn(1, 4000, 1, generator=g) + 1.0
    estimates = []
    for step in range(1000):
        for _ in range(train.disc_steps):
            q = torch.randn(1, train.batch_size, 1, generator=g) + 1.0
            p = torch.randn(1, train.batch_size, 1, generator=g)
            optimizer.zero_grad()
            divergence.discriminator_loss(q, p).sum().backward()
            optimizer.step()
        if step >= 800 and step % 10 == 0:
            with torch.no_grad():
                estimates.append(float(density_ratio_kl(divergence.logits(held_out))))
    estimate = sum(estimates) / len(estimates)
    assert estimate == pytest.approx(0.5, rel=0.05)


def test_disc_steps_updates_each_discriminator_that_often_per_model_step() -> None:
    trainer = Trainer(tiny(objective={"preset": "aae"}, train={"disc_steps": 3}))
    trainer.train_steps(4)
    steps = {group: int(optimizer.steps[0]) for group, optimizer in trainer.optimizers.items()}
    assert steps.pop("model") == 4
    assert steps and all(n == 12 for n in steps.values()), steps
