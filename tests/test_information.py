"""The MI sandwich (training/information.py) against a closed-form I_q(x;z).

Linear-Gaussian: x ~ N(0, I_2), q(z|x) = N(a x, s² I_2), so q(z) = N(0, (a² + s²) I_2) and
I_q(x;z) = 2 · ½ log(1 + a²/s²) exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from experiment.config import MI_BOUNDS
from training.information import (
    aggregate_log_densities,
    aggregate_log_density,
    barber_agakov,
    mutual_information,
    mutual_information_upper,
)

A, S, DIM = 2.0, 1.0, 2
TRUE_MI = DIM * 0.5 * math.log(1 + A**2 / S**2)  # 1.609 nats


def sandwich(n: int, repeats: int, generator: torch.Generator) -> tuple[float, float]:
    """(mean lower bound, mean upper bound) over `repeats` independent sets of n points."""
    lower, upper = [], []
    for _ in range(repeats):
        x = torch.randn(n, DIM, generator=generator, dtype=torch.float64)
        mu, logvar = A * x, torch.full((n, DIM), math.log(S**2), dtype=torch.float64)
        z = mu + S * torch.randn(n, DIM, generator=generator, dtype=torch.float64)
        lower.append(mutual_information(z, mu, logvar)[0])
        upper.append(mutual_information_upper(z, mu, logvar))
    return sum(lower) / repeats, sum(upper) / repeats


def test_lower_and_upper_bounds_sandwich_the_true_mi_and_close_in_on_it() -> None:
    generator = torch.Generator().manual_seed(0)
    gaps = []
    for n, repeats in [(32, 40), (256, 10), (2048, 3)]:
        lower, upper = sandwich(n, repeats, generator)
        assert lower < TRUE_MI < upper, (n, lower, upper)
        gaps.append(upper - lower)
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[0] > 0.2 and gaps[2] < 0.03  # measured: 0.36 at N = 32, 0.007 at N = 2048


def test_leave_one_out_density_matches_the_brute_force_mixture() -> None:
    generator = torch.Generator().manual_seed(1)
    mu = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    logvar = torch.randn(7, 3, generator=generator, dtype=torch.float64) * 0.3
    z = mu + torch.randn(7, 3, generator=generator, dtype=torch.float64)
    components = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    table = components.log_prob(z.unsqueeze(1)).sum(-1)  # (7 z, 7 components)
    table.fill_diagonal_(-math.inf)
    brute = torch.logsumexp(table, dim=1) - math.log(6)
    result = aggregate_log_density(z, mu, logvar, leave_one_out=True, chunk_size=3)
    torch.testing.assert_close(result, brute)


def test_the_lower_bound_saturates_at_log_n_while_the_upper_bound_does_not() -> None:
    n = 50
    mu = torch.arange(n, dtype=torch.float64).unsqueeze(1) * 100.0  # far apart: I_q = log N
    logvar = torch.zeros(n, 1, dtype=torch.float64)
    z = mu + torch.randn(n, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lower, cap = mutual_information(z, mu, logvar)
    assert lower == pytest.approx(cap) and cap == pytest.approx(math.log(n))
    assert mutual_information_upper(z, mu, logvar) > 100  # the other points explain nothing


def test_barber_agakov_needs_the_data_entropy_and_every_mi_metric_says_its_bound() -> None:
    assert barber_agakov(1.3585, -0.5) == pytest.approx(1.8585)
    assert math.isnan(barber_agakov(None, 0.1))
    assert MI_BOUNDS == {"mi": "lower", "mi_upper": "upper", "mi_ba": "lower", "rate": "upper"}


def test_one_table_gives_both_mixtures_bit_for_bit() -> None:
    # the evaluation builds the (M, N) table once for mi, mi_upper and kl_qz_pz: the same
    # chunks and the same operations as each mixture computed alone, so the same bits
    generator = torch.Generator().manual_seed(2)
    mu = torch.randn(600, 2, generator=generator)
    logvar = torch.randn(600, 2, generator=generator) - 3
    z = mu + torch.exp(0.5 * logvar) * torch.randn(600, 2, generator=generator)
    full, loo = aggregate_log_densities(z, mu, logvar)
    assert torch.equal(full, aggregate_log_density(z, mu, logvar))
    assert torch.equal(loo, aggregate_log_density(z, mu, logvar, leave_one_out=True))
    assert bool((loo < full + math.log(600 / 599)).all())  # leaving one out only removes mass
    only_full, none = aggregate_log_densities(z, mu, logvar, leave_one_out=False)
    assert none is None and torch.equal(only_full, full)
