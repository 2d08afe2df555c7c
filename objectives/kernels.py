"""How an MMD kernel's bandwidth c is chosen: the named rules of `objective.kernel_bandwidth`.

Both kernels of `objectives.mmd` take one bandwidth c: IMQ k = c / (c + D), Gaussian
k = exp(-D / c), D = ||a - b||² between two d-dimensional samples. The rules:

- `dim-squared`: c = d². Zhao et al.'s own code for the paper (github ShengjiaZhao/Lagrangian,
  `mmd_vae.py`, `compute_kernel`) uses exp(-mean_k (a_k - b_k)² / d): the mean over the d
  dimensions, divided by d again, which is exp(-D / d²); with its biased estimator (the mean
  of every kernel matrix, diagonal included), batch 100 against 100 prior draws.
- `twice-dim`: c = 2 d σ² with the prior's σ² = 1: the WAE paper's choice for its IMQ kernel
  (Tolstikhin et al. 2018, Section 4).
- `median`: c = 2 · median of D over the distinct pairs of the pooled q and p samples, per
  member and per batch (Gretton et al. 2012, Section 8: σ = the median distance, in
  k = exp(-D / (2σ²))); the lower median for an even count; no gradient flows through c.
- a positive number: that c.
"""

from __future__ import annotations

import torch
from torch import Tensor

from objectives.mmd import Scale, squared_distances

BANDWIDTH_RULES = ("dim-squared", "twice-dim", "median")


def fixed_bandwidth(rule: str | float, dim: int) -> float | None:
    """c of a rule that depends on the dimension only (None: `median`, which reads samples)."""
    if rule == "dim-squared":
        return float(dim * dim)
    if rule == "twice-dim":
        return 2.0 * dim
    if rule == "median":
        return None
    assert not isinstance(rule, str), f"bandwidth rule {rule!r} is not one of {BANDWIDTH_RULES}"
    assert rule > 0, f"a kernel bandwidth must be > 0, got {rule}"
    return float(rule)


def median_bandwidth(x: Tensor, y: Tensor) -> Tensor:
    """2 · median ||v_i - v_j||² over i < j of the pooled v = [x; y], (...) for x (..., N, d)
    and y (..., M, d): one c per leading index, detached."""
    with torch.no_grad():
        pooled = torch.cat([x, y], -2)
        count = pooled.shape[-2]
        rows, columns = torch.triu_indices(count, count, 1, device=pooled.device)
        distances = squared_distances(pooled, pooled)[..., rows, columns]  # (..., P)
        return 2.0 * distances.median(-1).values


def bandwidth(rule: str | float, x: Tensor, y: Tensor) -> Scale:
    """c for samples x (..., N, d) and y (..., M, d) under `rule`: a number, or (...) per member."""
    fixed = fixed_bandwidth(rule, x.shape[-1])
    return median_bandwidth(x, y) if fixed is None else fixed
