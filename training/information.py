"""The mutual information I_q(x;z) as a sandwich of bounds (docs/TRAINING.md#metrics; nats).

I_q(x;z) = E_{x, z~q(z|x)}[log q(z|x) - log q(z)] with the aggregate posterior
q(z) = E_x q(z|x), which no model gives in closed form. With N evaluation points and one draw
z_i ~ q(z|x_i) each (Poole et al. 2019, "On Variational Bounds of Mutual Information"):

- ``mi`` (lower bound): q(z_i) estimated by the mixture over all N points, the point's own
  term included. In expectation this is a lower bound (the InfoNCE / "minibatch" bound), and
  each term is at most log N, so it saturates at ``mi_cap`` = log N.
- ``mi_upper`` (upper bound): the leave-one-out mixture over the other N - 1 points. It is an
  unbiased estimate of q(z_i) independent of z_i's own x, so by Jensen the estimate of
  E[log q(z)] is low and the MI estimate high: an upper bound in expectation, not capped.
- ``rate`` = E_x KL(q(z|x)||p(z)) = I_q + KL(q(z)||p(z)) >= I_q: the looser upper bound.
- ``mi_ba`` (lower bound, Barber and Agakov 2003): I_q >= H(x) - E_q[-log p(x|z)]
  = H(x) - distortion, for any decoder; needs the data entropy H(x), known only on ``mog``
  (the paper's Appendix C.1 reads its MI off the distortion this way).

Both aggregate estimates approach I_q as N grows; the gap between them says how far to trust
either (a gap of a few nats at ``mi`` near ``mi_cap`` means the lower bound is saturated).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from objectives.networks import LOG_2PI, DiagonalGaussian


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension (broadcasting)."""
    return DiagonalGaussian(mu, logvar).log_prob(z)


def aggregate_log_density(
    z: Tensor, mu: Tensor, logvar: Tensor, *, leave_one_out: bool = False, chunk_size: int = 256
) -> Tensor:
    """log q(z_i) with q(z) = 1/N Σ_j N(z; mu_j, diag(exp(logvar_j))). z: (M, Z) -> (M,).

    With ``leave_one_out`` (M = N, z_i drawn from component i) component i is left out of row
    i's mixture: log 1/(N-1) Σ_{j≠i} q(z_i|x_j). See `aggregate_log_densities`.
    """
    full, loo = aggregate_log_densities(
        z, mu, logvar, full=not leave_one_out, leave_one_out=leave_one_out, chunk_size=chunk_size
    )
    return loo if leave_one_out else full


def aggregate_log_densities(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    *,
    full: bool = True,
    leave_one_out: bool = True,
    chunk_size: int = 256,
) -> tuple[Tensor | None, Tensor | None]:
    """(log q(z_i), its leave-one-out form), each (M,) or None where not asked, from one table.

    The (M, N) table of log q(z_i|x_j) is built with two matrix products in float64, using
    Σ_d a_jd (z_id - mu_jd)^2 = z_i^2 · a_j - 2 z_i · (a_j mu_j) + mu_j^2 · a_j, a = exp(-logvar),
    one chunk of rows at a time. Both mixtures come from the same chunk, so an evaluation that
    needs both (``mi``, ``mi_upper``, ``kl_qz_pz``) builds the table once: it was most of an
    evaluation's time on the mixture (docs/BENCHMARKS.md, "Evaluation").
    """
    n = len(mu)
    assert not leave_one_out or (len(z) == n and n > 1), (
        f"leave-one-out needs one z per component and N > 1, got {len(z)} z and N = {n}"
    )
    z, mu, logvar = z.double(), mu.double(), logvar.double()
    precision = torch.exp(-logvar)  # (N, Z)
    weighted_mu = mu * precision
    constant = (mu**2 * precision + logvar + LOG_2PI).sum(-1)  # (N,)
    fulls, loos = [], []
    for rows in chunks(len(z), chunk_size):
        zc = z[rows]
        log_table = -0.5 * ((zc**2) @ precision.T - 2 * zc @ weighted_mu.T + constant)  # (C, N)
        if full:
            fulls.append(torch.logsumexp(log_table, dim=1) - math.log(n))
        if leave_one_out:
            own = torch.arange(rows.start, rows.stop, device=z.device)
            log_table[own - rows.start, own] = -math.inf
            loos.append(torch.logsumexp(log_table, dim=1) - math.log(n - 1))
    return (torch.cat(fulls) if full else None), (torch.cat(loos) if leave_one_out else None)


def _log_conditional(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    return gaussian_log_density(z.double(), mu.double(), logvar.double())  # (N,)


def mutual_information(z: Tensor, mu: Tensor, logvar: Tensor) -> tuple[float, float]:
    """``mi``: the lower bound on I_q(x;z) over N points, and its cap log N.

    ``z`` holds one draw z_i ~ q(z|x_i) per point. Because q(z_i) >= q(z_i|x_i)/N, every term
    is at most log N: with N points the estimate cannot exceed log N nats.
    """
    return lower_bound(z, mu, logvar, aggregate_log_density(z, mu, logvar))


def mutual_information_upper(z: Tensor, mu: Tensor, logvar: Tensor) -> float:
    """``mi_upper``: the leave-one-out upper bound on I_q(x;z) over N > 1 points (Poole 2019)."""
    return upper_bound(z, mu, logvar, aggregate_log_density(z, mu, logvar, leave_one_out=True))


def lower_bound(z: Tensor, mu: Tensor, logvar: Tensor, log_q: Tensor) -> tuple[float, float]:
    """``mi`` and its cap from log q(z_i) (`aggregate_log_densities`' first)."""
    n = len(mu)
    mi = float((_log_conditional(z, mu, logvar) - log_q).mean())
    return min(mi, math.log(n)), math.log(n)


def upper_bound(z: Tensor, mu: Tensor, logvar: Tensor, log_q_loo: Tensor) -> float:
    """``mi_upper`` from the leave-one-out log q(z_i) (`aggregate_log_densities`' second)."""
    return float((_log_conditional(z, mu, logvar) - log_q_loo).mean())


def barber_agakov(data_entropy: float | None, distortion: float) -> float:
    """``mi_ba`` = H(x) - distortion, a lower bound on I_q(x;z); NaN when H(x) is unknown."""
    return math.nan if data_entropy is None else data_entropy - distortion
