"""Closed-form tests of training/metrics.py: every metric on models whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from training.data import load_dataset
from training.information import mutual_information
from training.metrics import (
    active_units,
    aggregate_log_density,
    decoder_table,
    evaluate,
    gaussian_log_density,
    kl_aggregate_prior,
    log_marginal_importance,
    log_marginal_quadrature,
    pairwise_table,
)
from training.mog import MOG_ENTROPY, mog_log_density

NOISE_STD = 0.5  # s in the linear-Gaussian model p(z) = N(0, I), p(x|z) = N(z, s² I)


def linear_gaussian(s: float = NOISE_STD):
    """(encode, log_likelihood, log_marginal) of p(x|z) = N(z, s²I), q(z|x) = p(z|x) exactly.

    The posterior is N(x / (1 + s²), s² / (1 + s²)) and p(x) = N(0, (1 + s²) I).
    """

    def encode(x):
        mu = x / (1 + s**2)
        return mu, torch.full_like(x, math.log(s**2 / (1 + s**2)))

    def log_likelihood(x, z):
        return gaussian_log_density(x, z, torch.full_like(z, math.log(s**2)))

    def log_marginal(x):
        return gaussian_log_density(x, torch.zeros_like(x), torch.full_like(x, math.log(1 + s**2)))

    return encode, log_likelihood, log_marginal


@pytest.mark.parametrize("s", [0.05, 0.5, 2.0])
def test_quadrature_matches_the_closed_form_marginal(s: float) -> None:
    _, log_likelihood, log_marginal = linear_gaussian(s)
    x = torch.linspace(-4, 4, 41, dtype=torch.float64).unsqueeze(1)
    estimate = log_marginal_quadrature(pairwise_table(log_likelihood), x)
    torch.testing.assert_close(estimate, log_marginal(x), atol=1e-6, rtol=0)


def test_quadrature_resolves_a_sharply_peaked_likelihood() -> None:
    """x = 50 z + N(0, 0.01²): p(x|z) is 2e-4 wide in z, under the first grid's spacing."""
    a, s = 50.0, 0.01

    def log_likelihood(x, z):
        return gaussian_log_density(x, a * z, torch.full_like(z, math.log(s**2)))

    x = torch.linspace(-100, 100, 21, dtype=torch.float64).unsqueeze(1)
    exact = gaussian_log_density(x, torch.zeros_like(x), torch.full_like(x, math.log(a**2 + s**2)))
    estimate = log_marginal_quadrature(pairwise_table(log_likelihood), x)
    torch.testing.assert_close(estimate, exact, atol=1e-4, rtol=0)


def test_quadrature_nll_of_the_true_mixture_is_its_entropy() -> None:
    """p(x|z) = N(sign(z), 1/4) with p(z) = N(0, 1) makes p(x) exactly the Section 4.1 mixture."""

    def table(x, z):  # (B, 1), (G, 1) -> (B, G)
        log_var = torch.tensor(math.log(0.25), dtype=x.dtype)
        below = gaussian_log_density(x.unsqueeze(-1), -torch.ones_like(z), log_var)  # (B, 1)
        above = gaussian_log_density(x.unsqueeze(-1), torch.ones_like(z), log_var)
        middle = torch.logaddexp(below, above) - math.log(2)  # z = 0: either side, halved
        side = torch.sign(z).T  # (1, G)
        return torch.where(side < 0, below, torch.where(side > 0, above, middle))

    x = torch.linspace(-8, 8, 1601, dtype=torch.float64).unsqueeze(1)
    log_px = log_marginal_quadrature(table, x)
    log_q = mog_log_density(x[:, 0])
    torch.testing.assert_close(log_px, log_q, atol=1e-6, rtol=0)
    # the NLL under the data distribution, -∫ q log p, is then the entropy (1.3585 nats) ...
    nll = float(-torch.trapezoid(log_q.exp() * log_px, x[:, 0]))
    assert abs(nll - MOG_ENTROPY) < 1e-5 and abs(MOG_ENTROPY - 1.3585) < 1e-4
    # ... and on test samples up to their sampling error (~0.011 nats for 4000 points)
    test = load_dataset("mog", seed=3, test_size=4000).test.double()
    assert float(-log_marginal_quadrature(table, test).mean()) == pytest.approx(
        MOG_ENTROPY, abs=0.04
    )


def test_decoder_table_broadcasts_a_distribution_over_points_and_grid() -> None:
    from objectives.networks import Bernoulli, DiagonalGaussian

    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(2, 5, generator=gen)

    def gaussian_decoder(z):
        return DiagonalGaussian(z @ weights, torch.tanh(z @ weights))

    def bernoulli_decoder(z):
        return Bernoulli(z @ weights)

    z = torch.randn(7, 2, generator=gen)
    for decoder, x in (
        (gaussian_decoder, torch.randn(3, 5, generator=gen)),
        (bernoulli_decoder, torch.bernoulli(torch.full((3, 5), 0.5), generator=gen)),
    ):
        slow = pairwise_table(lambda x, z, d=decoder: d(z).log_prob(x))(x, z)
        fast = decoder_table(decoder)(x, z)  # a Gaussian's: one float64 matrix product
        torch.testing.assert_close(fast, slow.to(fast.dtype), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("samples", [1, 7, 1000])
def test_importance_sampling_is_exact_with_the_true_posterior(samples: int) -> None:
    encode, log_likelihood, log_marginal = linear_gaussian()
    x = torch.randn(57, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimate = log_marginal_importance(
        encode,
        log_likelihood,
        x,
        samples,
        torch.Generator().manual_seed(1),
        chunk_points=10,
        chunk_samples=64,
    )
    torch.testing.assert_close(estimate, log_marginal(x).double(), atol=1e-9, rtol=0)


def test_importance_sampling_is_a_lower_bound_with_a_poor_proposal() -> None:
    _, log_likelihood, log_marginal = linear_gaussian()

    def poor_encode(x):  # the prior as proposal
        return torch.zeros_like(x), torch.zeros_like(x)

    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    few = log_marginal_importance(poor_encode, log_likelihood, x, 2, gen).mean()
    many = log_marginal_importance(poor_encode, log_likelihood, x, 2000, gen).mean()
    exact = log_marginal(x).mean()
    assert few < many < exact + 1e-3
    assert float(exact - many) < 0.01


def test_aggregate_density_matches_the_brute_force_mixture() -> None:
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(30, 4, generator=gen), torch.randn(30, 4, generator=gen) - 1
    z = torch.randn(11, 4, generator=gen)
    pairs = gaussian_log_density(z.double()[:, None], mu.double()[None], logvar.double()[None])
    brute = torch.logsumexp(pairs, dim=1) - math.log(30)
    torch.testing.assert_close(aggregate_log_density(z, mu, logvar, chunk_size=4), brute)


def test_an_encoder_that_ignores_x_has_no_information_and_matches_the_prior() -> None:
    n = 500
    mu, logvar = torch.zeros(n, 3), torch.zeros(n, 3)
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    mi, mi_cap = mutual_information(z, mu, logvar)
    assert mi == pytest.approx(0.0, abs=1e-9)
    assert mi_cap == pytest.approx(math.log(n))
    assert kl_aggregate_prior(z, mu, logvar) == pytest.approx(0.0, abs=1e-9)
    assert active_units(mu) == 0


def test_mutual_information_is_capped_at_log_n() -> None:
    n = 64
    mu = 100.0 * torch.arange(n, dtype=torch.float32).unsqueeze(1)  # far apart: z identifies x
    logvar = torch.full((n, 1), -4.0)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, 1, generator=torch.Generator().manual_seed(0))
    mi, mi_cap = mutual_information(z, mu, logvar)
    assert mi <= mi_cap == pytest.approx(math.log(n))
    assert mi == pytest.approx(math.log(n), abs=1e-6)


def test_active_units_counts_dimensions_whose_mean_varies() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(4000, 1, generator=gen)
    base = (base - base.mean()) / base.std()  # exactly unit variance
    scales = torch.tensor([1.0, 0.3, 0.2, 0.05, 0.0])  # variances 1, .09, .04, .0025, 0
    assert active_units(base * scales) == 3
    assert active_units(base * scales, threshold=0.05) == 2


def test_evaluate_reports_every_metric_and_the_exact_nll() -> None:
    encode, log_likelihood, log_marginal = linear_gaussian()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=gen) * math.sqrt(1 + NOISE_STD**2)
    entropy = 4 * 0.5 * math.log(2 * math.pi * math.e * (1 + NOISE_STD**2))  # H(x), closed form
    metrics = evaluate(
        encode, log_likelihood, x, iw_samples=5, generator=gen, chunk_size=64, data_entropy=entropy
    )
    expected = {"nll", "elbo", "rate", "distortion", "mi", "mi_cap", "mi_upper", "mi_ba"}
    assert expected | {"kl_qz_pz", "mmd_qz_pz", "active_units"} == set(metrics)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["nll"] == pytest.approx(float(-log_marginal(x).mean()), abs=1e-4)
    # true posterior: the ELBO is log p(x) up to the one-sample noise of the distortion
    assert metrics["elbo"] == pytest.approx(-metrics["nll"], abs=0.1)
    assert metrics["active_units"] == 4
    assert 0 < metrics["mi"] <= metrics["mi_cap"] == pytest.approx(math.log(300))
    assert metrics["rate"] >= metrics["mi"] - 0.05  # rate upper-bounds I_q
    assert abs(metrics["mmd_qz_pz"]) < 0.05  # q(z) of the true posterior is the prior
    # the exact decoder makes Barber-Agakov tight: H(x) - H(x|z) = I = 2 log((1 + s²) / s²)
    true_mi = 4 * 0.5 * math.log((1 + NOISE_STD**2) / NOISE_STD**2)
    assert metrics["mi_ba"] == pytest.approx(true_mi, abs=0.15)
    assert metrics["mi"] < true_mi < metrics["mi_upper"]
    assert math.isnan(evaluate(encode, log_likelihood, x[:10], iw_samples=5)["mi_ba"])


def test_evaluate_uses_quadrature_for_a_one_dimensional_latent() -> None:
    encode, log_likelihood, log_marginal = linear_gaussian()

    def broken_encode(x):  # quadrature never needs the encoder's proposal
        mu, logvar = encode(x)
        return mu + 3.0, logvar

    x = torch.linspace(-3, 3, 50).unsqueeze(1)
    metrics = evaluate(broken_encode, log_likelihood, x, iw_samples=1)
    assert metrics["nll"] == pytest.approx(float(-log_marginal(x).mean()), abs=1e-5)
