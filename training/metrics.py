"""Evaluation metrics of a trained encoder/decoder pair (docs/TRAINING.md#metrics; all in nats).

- ``nll``: test negative log-likelihood -log p(x), p(x) = ∫ p(z) p(x|z) dz. With a 1-D latent
  (the Section 4.1 mixture) the integral is done by the trapezoid rule on a grid refined until
  it agrees to 1e-4 nats (exact for practical purposes); otherwise by importance sampling
  with q(z|x) as proposal
  (Appendix C.2): log p(x) ≈ logsumexp_k [log p(x, z_k) - log q(z_k|x)] - log K.
- ``elbo`` = -(distortion + rate); ``rate`` = E_x KL(q(z|x)||p(z)) (closed form, an upper bound
  on I_q); ``distortion`` = -E_q log p(x|z).
- the MI sandwich (``training.information``): ``mi`` (lower bound, the aggregate
  posterior over the N evaluation points; never above ``mi_cap`` = log N), ``mi_upper``
  (upper bound, leave-one-out), ``mi_ba`` (lower bound, H(x) - distortion, when H(x) is known).
- ``kl_qz_pz`` = KL(q(z)||p(z)) with the same mixture density; ``mmd_qz_pz`` the unbiased MMD
  between q(z) and p(z) samples (IMQ kernel); ``active_units`` (Burda et al., 2015).

The functions take plain callables, so each is tested in closed form on hand-built models:
``encode(x) -> (mu, logvar)`` for the Gaussian q(z|x) and ``log_likelihood(x, z) -> (B,)`` for
log p(x|z) evaluated row by row; the prior p(z) is the standard normal throughout.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from objectives.mmd import mmd_unbiased
from objectives.networks import LOG_2PI, DiagonalGaussian, standard_normal_log_prob
from objectives.record import gaussian_kl
from training.information import (
    aggregate_log_densities,
    aggregate_log_density,
    barber_agakov,
    chunks,
    gaussian_log_density,
    lower_bound,
    upper_bound,
)

Encode = Callable[[Tensor], tuple[Tensor, Tensor]]  # x (B, D) -> mu, logvar, each (B, Z)
LogLikelihood = Callable[[Tensor, Tensor], Tensor]  # x (B, D), z (B, Z) -> log p(x|z) (B,)
LogLikelihoodTable = Callable[[Tensor, Tensor], Tensor]  # x (B, D), z (G, Z) -> (B, G)

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2015): a unit is active if Cov_x(E_q[z|x]) > 0.01
MMD_MAX_POINTS = 2048  # MMD is quadratic in the sample size: use at most this many per side


# --------------------------------------------------------------------------- log p(x)


def pairwise_table(log_likelihood: LogLikelihood) -> LogLikelihoodTable:
    """Turn a row-by-row log p(x|z) into the (B, G) table of every x against every z."""

    def table(x: Tensor, z: Tensor) -> Tensor:
        b, g = len(x), len(z)
        x_rows = x.unsqueeze(1).expand(b, g, x.shape[-1]).reshape(b * g, -1)
        z_rows = z.unsqueeze(0).expand(b, g, z.shape[-1]).reshape(b * g, -1)
        return log_likelihood(x_rows, z_rows).reshape(b, g)

    return table


def decoder_table(decoder: Callable[[Tensor], Any]) -> LogLikelihoodTable:
    """The (B, G) table of log p(x|z) from a decoder that maps z (G, Z) to a distribution.

    The distribution is a dataclass of (G, D) parameter tensors with a ``log_prob`` summing the
    last axis (objectives.networks: DiagonalGaussian, Bernoulli). The network runs once per
    grid, not once per (x, z) pair. A Gaussian's table is one float64 matrix product:
    log N(x; m, e^v) = Σ_d [-(log 2π + v_d + a_d m_d²)/2 + a_d m_d x_d - a_d x_d²/2], a = e^-v,
    so [1 | x | x²] (B, 1+2D) times per-node coefficients (1+2D, G) (`gaussian_coefficients`);
    other distributions are broadcast against the points.
    """
    cache: list[Any] = [None, None]  # the last grid and its distribution (or coefficients)

    def table(x: Tensor, z: Tensor) -> Tensor:
        if cache[0] is not z:
            dist = decoder(z)
            gaussian = isinstance(dist, DiagonalGaussian)
            cache[:] = [z, gaussian_coefficients(dist) if gaussian else dist]
        if isinstance(cache[1], Tensor):
            xd = x.double()
            return torch.cat([torch.ones_like(xd[:, :1]), xd, xd * xd], 1) @ cache[1]
        dist, b, g = cache[1], len(x), len(z)
        params = {
            f.name: getattr(dist, f.name).unsqueeze(0).expand(b, g, -1)
            for f in dataclasses.fields(dist)
        }
        return type(dist)(**params).log_prob(x.unsqueeze(1).expand(b, g, -1))

    return table


def gaussian_coefficients(dist: DiagonalGaussian) -> Tensor:
    """(1+2D, G) float64: row 0 the constant, rows 1..D the x terms, then the x² terms."""
    mean, logvar = dist.mean.double(), dist.logvar.double()  # (G, D)
    precision = torch.exp(-logvar)
    constant = -0.5 * (LOG_2PI + logvar + precision * mean**2).sum(-1, keepdim=True)
    return torch.cat([constant, precision * mean, -0.5 * precision], 1).T.contiguous()


def log_marginal_quadrature(
    table: LogLikelihoodTable,
    x: Tensor,
    *,
    half_width: float = 8.0,
    levels: tuple[int, int] = (12, 18),
    tolerance: float = 1e-4,
    max_elements: int = 2**16,
) -> Tensor:
    """log p(x) = log ∫ N(z; 0, 1) p(x|z) dz for a 1-D latent, by the trapezoid rule. (N,)

    The grid spans [-half_width, half_width] (prior mass outside [-8, 8] is below 1e-15) with
    2^k + 1 nodes, k from ``levels[0]`` (spacing 16/2^12 ≈ 0.004). Each point's grid is then
    halved, reusing the nodes already summed, until two successive rules agree to
    ``tolerance`` nats or k reaches ``levels[1]`` (spacing ≈ 6e-5): a decoder that makes
    p(x|z) sharply peaked in z is resolved rather than missed. Sums are logsumexps in float64,
    so tiny likelihoods do not underflow; ``max_elements`` bounds the (rows, nodes, D) tables.
    Measured against a 2^20 + 1-node rule on the Figure 1 models (docs/RESULTS.md; the sharpest
    is β = 0.5 after 50k steps, MI 4.9 nats, decoder variance at its floor): the largest error
    of one point's log p(x) was 7.4e-6 nats starting at k = 12, 4.2e-6 starting at k = 13 (at
    twice the cost); 2.4e-7 (float32 rounding) on smoother models.
    """
    first, last = levels

    def log_sums(nodes: Tensor, rows: Tensor, end_weight: bool) -> Tensor:
        """log Σ_nodes w N(z; 0, 1) p(x|z) for the points ``x[rows]``, (len(rows),)."""
        log_w = standard_normal_log_prob(nodes.unsqueeze(-1))  # (G,)
        if end_weight:  # trapezoid end points carry half weight
            log_w[[0, -1]] -= math.log(2)
        grid = nodes.to(x.dtype).unsqueeze(-1)  # (G, 1)
        step = max(1, max_elements // (len(nodes) * x.shape[1]))
        out = [
            torch.logsumexp(table(x[rows[c]], grid).double() + log_w, dim=1)
            for c in chunks(len(rows), step)
        ]
        return torch.cat(out) if out else log_w.new_zeros(0)

    h = 2 * half_width / 2**first
    nodes = torch.linspace(
        -half_width, half_width, 2**first + 1, dtype=torch.float64, device=x.device
    )
    active = torch.arange(len(x), device=x.device)
    log_sum = log_sums(nodes, active, end_weight=True)  # (N,): log of the sum, in units of h
    estimate = log_sum + math.log(h)
    for k in range(first + 1, last + 1):
        h /= 2
        midpoints = torch.linspace(
            -half_width + h, half_width - h, 2 ** (k - 1), dtype=torch.float64, device=x.device
        )
        log_sum[active] = torch.logaddexp(log_sum[active], log_sums(midpoints, active, False))
        refined = log_sum[active] + math.log(h)
        converged = (refined - estimate[active]).abs() < tolerance
        estimate[active] = refined
        active = active[~converged]
        if len(active) == 0:
            break
    return estimate.to(x.dtype)


def log_marginal_importance(
    encode: Encode,
    log_likelihood: LogLikelihood,
    x: Tensor,
    samples: int,
    generator: torch.Generator | None = None,
    *,
    chunk_points: int = 100,
    chunk_samples: int = 100,
) -> Tensor:
    """Importance-sampled log p(x) with proposal q(z|x) and K = ``samples`` draws. (N,)

    log p(x) ≈ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,
    z_k ~ q(z|x) (Burda et al., 2015; the paper's Appendix C.2). Points and samples are
    processed in chunks of ``chunk_points`` x ``chunk_samples``, so memory does not grow with K.
    The estimate is exact for every K when q(z|x) is the true posterior p(z|x).
    """
    out = []
    for rows in chunks(len(x), chunk_points):
        xb = x[rows]  # (B, D)
        mu, logvar = encode(xb)  # (B, Z)
        b, z_dim = mu.shape
        running = torch.full((b,), -math.inf, dtype=torch.float64, device=x.device)
        for block in chunks(samples, chunk_samples):
            k = block.stop - block.start
            noise = torch.randn(
                (k, b, z_dim), generator=generator, device=mu.device, dtype=mu.dtype
            )
            z = mu + torch.exp(0.5 * logvar) * noise  # (k, B, Z)
            x_rows = xb.unsqueeze(0).expand(k, b, xb.shape[-1]).reshape(k * b, -1)
            log_lik = log_likelihood(x_rows, z.reshape(k * b, z_dim)).reshape(k, b)
            log_w = log_lik + standard_normal_log_prob(z) - gaussian_log_density(z, mu, logvar)
            running = torch.logaddexp(running, torch.logsumexp(log_w.double(), dim=0))
        out.append(running - math.log(samples))
    return torch.cat(out).to(x.dtype)


# --------------------------------------------------------------------------- q(z) terms


def kl_aggregate_prior(z: Tensor, mu: Tensor, logvar: Tensor, log_q: Tensor | None = None) -> float:
    """KL(q(z)||p(z)) = E_{q(z)}[log q(z) - log p(z)], q(z) the mixture over the N points
    (``log_q``: log q(z_i) when already computed, `aggregate_log_densities`)."""
    if log_q is None:
        log_q = aggregate_log_density(z, mu, logvar)
    return float((log_q - standard_normal_log_prob(z.double())).mean())


def active_units(mu: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent dimensions d with Var_x(E_q[z_d|x]) > threshold (Burda et al., 2015)."""
    if len(mu) < 2:
        return 0
    return int((mu.double().var(dim=0) > threshold).sum())


# --------------------------------------------------------------------------- all metrics


def negative_log_likelihood(
    x: Tensor,
    encode: Encode,
    log_likelihood: LogLikelihood,
    table: LogLikelihoodTable | None,
    iw_samples: int,
    generator: torch.Generator | None,
) -> float:
    """Mean -log p(x) over ``x`` (N, D): ``nll`` on the test set, ``nll_train`` on a train subset.

    Quadrature when the latent is 1-D (``table``, if given, is a fast every-x-against-every-z
    log p(x|z); default: the row-by-row ``log_likelihood``), importance sampling with
    ``iw_samples`` draws otherwise.
    """
    z_dim = encode(x[:1])[0].shape[1]
    if z_dim == 1:
        log_px = log_marginal_quadrature(table or pairwise_table(log_likelihood), x)
    else:
        log_px = log_marginal_importance(encode, log_likelihood, x, iw_samples, generator)
    return float(-log_px.mean())


def evaluate(
    encode: Encode,
    log_likelihood: LogLikelihood,
    x: Tensor,
    *,
    iw_samples: int,
    generator: torch.Generator | None = None,
    table: LogLikelihoodTable | None = None,
    data_entropy: float | None = None,
    chunk_size: int = 500,
) -> dict[str, float]:
    """Every evaluation metric on the points ``x`` (N, D); see the module docstring.

    ``nll`` as in `negative_log_likelihood`. The Monte-Carlo metrics use one draw of
    z ~ q(z|x) per point, from ``generator``. ``data_entropy`` H(x) gives ``mi_ba`` (else NaN).
    """
    mus, logvars, zs, log_liks = [], [], [], []
    for rows in chunks(len(x), chunk_size):
        mu, logvar = encode(x[rows])
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * noise
        mus.append(mu)
        logvars.append(logvar)
        zs.append(z)
        log_liks.append(log_likelihood(x[rows], z))
    mu, logvar, z, log_lik = (torch.cat(t) for t in (mus, logvars, zs, log_liks))
    z_dim = mu.shape[1]

    nll = negative_log_likelihood(x, encode, log_likelihood, table, iw_samples, generator)
    rate = float(gaussian_kl(mu, logvar).mean())
    distortion = float(-log_lik.mean())
    log_q, log_q_loo = aggregate_log_densities(z, mu, logvar, leave_one_out=len(z) > 1)
    mi, mi_cap = lower_bound(z, mu, logvar, log_q)
    m = min(len(z), MMD_MAX_POINTS)
    prior = torch.randn((m, z_dim), generator=generator, device=z.device, dtype=z.dtype)
    mmd = mmd_unbiased(z[:m], prior, kernel="imq")  # C = 2 Z (WAE, InfoVAE)
    return {
        "nll": nll,
        "elbo": -(distortion + rate),
        "rate": rate,
        "distortion": distortion,
        "mi": mi,
        "mi_cap": mi_cap,
        "mi_upper": upper_bound(z, mu, logvar, log_q_loo) if len(z) > 1 else math.nan,
        "mi_ba": barber_agakov(data_entropy, distortion),
        "kl_qz_pz": kl_aggregate_prior(z, mu, logvar, log_q),
        "mmd_qz_pz": float(mmd),
        "active_units": float(active_units(mu)),
    }
