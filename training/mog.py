"""The one-dimensional mixture of the paper's Section 4.1, with its exact density and entropy.

q(x) = 1/2 N(-1, 1/4) + 1/2 N(1, 1/4), sampled from a seeded generator; the exact density gives
the exact NLL by quadrature and the entropy the best test NLL any model can reach.
"""

from __future__ import annotations

import math

import torch

MOG_MEANS = (-1.0, 1.0)  # equal weights 1/2
MOG_STD = 0.5  # variance 1/4


def mog_log_density(x: torch.Tensor) -> torch.Tensor:
    """Exact log q(x) of q = 1/2 N(-1, 1/4) + 1/2 N(1, 1/4) (Section 4.1), elementwise."""
    means = torch.tensor(MOG_MEANS, dtype=x.dtype, device=x.device)
    standardised = (x.unsqueeze(-1) - means) / MOG_STD  # (..., 2)
    log_normaliser = math.log(MOG_STD * math.sqrt(2 * math.pi))
    log_components = -0.5 * standardised**2 - log_normaliser + math.log(0.5)
    return torch.logsumexp(log_components, dim=-1)


def mog_entropy(half_width: float = 8.0, points: int = 32_001) -> float:
    """H[q] = -integral of q log q, by the trapezoid rule in float64 (no closed form exists)."""
    x = torch.linspace(-half_width, half_width, points, dtype=torch.float64)
    log_q = mog_log_density(x)
    return float(-torch.trapezoid(log_q.exp() * log_q, x))


MOG_ENTROPY = mog_entropy()  # about 1.3585 nats: the best test NLL a model of q can reach


def sample_mog(n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws from the Section 4.1 mixture, as an (n, 1) float32 tensor."""
    component = torch.randint(len(MOG_MEANS), (n,), generator=generator)
    means = torch.tensor(MOG_MEANS)[component]
    return (means + MOG_STD * torch.randn(n, generator=generator)).unsqueeze(1)
