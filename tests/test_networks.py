"""objectives/networks.py against torch.distributions and closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from objectives.config import ModelConfig
from objectives.networks import (
    Bernoulli,
    DiagonalGaussian,
    Discriminator,
    InfoAEModel,
    Tanh,
    bernoulli_entropy,
    mlp,
    relaxed_bernoulli_sample,
    soft_clamp,
    standard_normal_log_prob,
)
from objectives.stacked import _LinearTanh

TINY = ModelConfig(hidden=8, layers=1, z_dim=2, discriminator_hidden=4)


def _model(likelihood: str, x_dim: int = 5, seed: int = 0) -> InfoAEModel:
    torch.manual_seed(seed)
    return InfoAEModel(x_dim, TINY, likelihood)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes(likelihood: str) -> None:
    model = _model(likelihood)
    x = torch.rand(7, 5)
    mu, logvar = model.encoder.encode(x)
    assert mu.shape == logvar.shape == (7, 2)
    z = model.sample_prior(7, x, torch.Generator().manual_seed(0))
    assert z.shape == (7, 2)
    assert model.decoder.log_prob(x, z).shape == (7,)
    assert model.prior_log_prob(z).shape == (7,)
    assert model.encoder_log_prob(z, x).shape == (7,)
    assert model.decoder.sample(z, relaxed=True).shape == (7, 5)
    assert Discriminator(5, TINY)(x).shape == (7,)


def test_paper_sizes() -> None:
    """Appendix C.2: two hidden layers of 1024 (tanh), z of size 50, 784 pixels."""
    model = InfoAEModel(784, ModelConfig(z_dim=50, activation="tanh"), "bernoulli")
    linears = [m for m in model.encoder.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 1024),
        (1024, 1024),
        (1024, 100),
    ]
    assert isinstance(model.encoder.net[1], Tanh)
    assert model.decoder.net[-1].out_features == 784


def test_tanh_is_tanh_within_float32_rounding() -> None:
    """2 σ(2x) - 1 (a different kernel from torch.tanh): values within 2e-7 of tanh in float64,
    the gradient 1 - tanh² within 1e-6, over the range a pre-activation takes and beyond."""
    x = torch.linspace(-20.0, 20.0, 400_001, requires_grad=True)
    y = Tanh()(x)
    y.sum().backward()
    exact = torch.tanh(x.detach().double())
    assert (y.detach().double() - exact).abs().max() < 2e-7
    assert (x.grad.double() - (1 - exact**2)).abs().max() < 1e-6
    assert torch.equal(Tanh()(torch.tensor([-50.0, 0.0, 50.0])), torch.tensor([-1.0, 0.0, 1.0]))


def test_mlp_activation_and_depth() -> None:
    net = mlp(3, 2, hidden=4, layers=3, activation="elu")
    assert sum(isinstance(m, nn.Linear) for m in net) == 4
    assert sum(isinstance(m, nn.ELU) for m in net) == 3
    with pytest.raises(AssertionError, match="activation"):
        mlp(3, 2, hidden=4, layers=1, activation="sigmoidish")


def test_gaussian_log_prob_and_entropy_match_torch() -> None:
    mean, logvar = torch.randn(4, 3), torch.randn(4, 3)
    value = torch.randn(4, 3)
    ours = DiagonalGaussian(mean, logvar)
    theirs = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    torch.testing.assert_close(ours.log_prob(value), theirs.log_prob(value).sum(-1))
    torch.testing.assert_close(ours.entropy(), theirs.entropy().sum(-1))
    prior = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(standard_normal_log_prob(value), prior.log_prob(value).sum(-1))


def test_bernoulli_log_prob_and_entropy_match_torch() -> None:
    logits = 3 * torch.randn(4, 6)
    x = (torch.rand(4, 6) < 0.5).float()
    theirs = torch.distributions.Bernoulli(logits=logits)
    torch.testing.assert_close(Bernoulli(logits).log_prob(x), theirs.log_prob(x).sum(-1))
    torch.testing.assert_close(bernoulli_entropy(logits), theirs.entropy().sum(-1))


def test_encoder_log_prob_is_the_gaussian_density() -> None:
    model = _model("gaussian")
    x, z = torch.randn(6, 5), torch.randn(6, 2)
    mu, logvar = model.encoder.encode(x)
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(model.encoder_log_prob(z, x), expected)


def test_relaxed_bernoulli_threshold_has_the_bernoulli_probability() -> None:
    """x > ½ iff l + Logistic > 0, an event of probability sigmoid(l), at any temperature."""
    logits = torch.tensor([[-2.0, 0.0, 1.5]]).expand(40_000, 3)
    x = relaxed_bernoulli_sample(logits, 0.5, torch.Generator().manual_seed(0))
    assert ((x >= 0) & (x <= 1)).all(), "relaxed samples lie in [0, 1]"
    frequency = (x > 0.5).float().mean(0)
    torch.testing.assert_close(frequency, torch.sigmoid(logits[0]), atol=0.01, rtol=0)


def test_hard_and_relaxed_samples() -> None:
    model = _model("bernoulli")
    z = torch.randn(50, 2)
    hard = model.decoder.sample(z, relaxed=False, generator=torch.Generator().manual_seed(1))
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    relaxed = model.decoder.sample(z, relaxed=True, generator=torch.Generator().manual_seed(1))
    assert relaxed.requires_grad, "relaxed samples must carry gradient to the decoder"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_sampling_is_seeded(likelihood: str) -> None:
    model = _model(likelihood)
    x = torch.zeros(3, 5)

    def draw(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return model.decoder.sample(model.sample_prior(3, x, g), relaxed=True, generator=g)

    torch.testing.assert_close(draw(0), draw(0), rtol=0, atol=0)
    assert not torch.equal(draw(0), draw(1))


def test_gaussian_decoder_variance_stays_bounded() -> None:
    model = _model("gaussian")
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(1e3)  # a diverging decoder
    logvar = model.decoder(torch.randn(20, 2) * 100).logvar
    low, high = model.config.decoder_logvar_min, model.config.decoder_logvar_max
    assert torch.isfinite(logvar).all() and (logvar >= low).all() and (logvar <= high).all()


def test_soft_clamp_is_identity_inside_and_bounded_outside() -> None:
    inside = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(soft_clamp(inside, -20, 20), inside, atol=1e-5, rtol=0)
    outside = soft_clamp(torch.tensor([-1e4, 1e4]), -10, 5)
    torch.testing.assert_close(outside, torch.tensor([-10.0, 5.0]))
    assert math.isclose(float(soft_clamp(torch.tensor(0.0), -10, 5)), 0.0, abs_tol=0.01)
    grid = torch.linspace(-14, 9, 47, requires_grad=True)
    (slope,) = torch.autograd.grad(soft_clamp(grid, -10, 5).sum(), grid)
    assert (slope > 0).all(), "the clamp keeps a gradient near and past its bounds"


def test_parameter_groups_partition_the_model() -> None:
    model = _model("bernoulli")
    groups = model.parameter_groups()
    p, q = {id(t) for t in groups["p"]}, {id(t) for t in groups["q"]}
    assert p and q and not p & q
    assert p | q == {id(t) for t in model.parameters()}
    assert q == {id(t) for t in model.encoder.parameters()}


def test_unknown_likelihood_is_refused() -> None:
    with pytest.raises(AssertionError, match="likelihood"):
        InfoAEModel(3, TINY, "poisson")


def test_a_stacked_layer_and_its_tanh_as_one_op_match_the_two_modules() -> None:
    """`_LinearTanh` against baddbmm followed by `Tanh`: the same arithmetic (the doubling
    rides in the product, exact in binary), but the BLAS may take another path for α, β ≠ 1,
    so outputs and all three gradients are held to float32 rounding, not bit for bit."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 30, generator=g, requires_grad=True)
    w = (torch.randn(3, 30, 40, generator=g) / 30**0.5).requires_grad_()
    b = torch.randn(3, 1, 40, generator=g, requires_grad=True)
    upstream = torch.randn(3, 20, 40, generator=g)
    outputs = []
    for op in (lambda: Tanh()(torch.baddbmm(b, x, w)), lambda: _LinearTanh.apply(x, w, b)):
        y = op()
        grads = torch.autograd.grad(y, (x, w, b), upstream)
        outputs.append((y.detach(), *grads))
    for modules, fused in zip(*outputs, strict=True):
        torch.testing.assert_close(fused, modules, rtol=1e-6, atol=1e-6)
