"""The MMD choices (`objective.kernel`, `kernel_bandwidth`, `kernel_estimator`) against the
formulas written out by brute force on fixed samples: every kernel × bandwidth rule ×
estimator, its gradient, the per-member median bandwidth, the p side's per-sample values, and
Zhao et al.'s own kernel as their code writes it (exp of minus the mean over dimensions,
divided by d again; the mean of every kernel matrix)."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import Tensor

from experiment.config import ConfigError, experiment_from_dict
from objectives.divergences import MaximumMeanDiscrepancy
from objectives.kernels import BANDWIDTH_RULES, bandwidth, median_bandwidth
from objectives.mmd import mmd_p_side_values
from training.members import apart

N, M, DIM = 6, 5, 3


def samples(seed: int = 0, leading: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*leading, N, DIM, generator=g, dtype=torch.float64) * 0.7 + 0.4
    y = torch.randn(*leading, M, DIM, generator=g, dtype=torch.float64)
    return x.requires_grad_(), y.requires_grad_()


def brute_kernel(a: Tensor, b: Tensor, kernel: str, c: float) -> Tensor:
    distance = sum((a[k] - b[k]) ** 2 for k in range(len(a)))
    return c / (c + distance) if kernel == "imq" else torch.exp(-distance / c)


def brute_within(a: Tensor, kernel: str, c: float, estimator: str) -> Tensor:
    """The mean of k(a_i, a_j) over i != j (unbiased) or over every pair (biased)."""
    n = len(a)
    pairs = [(i, j) for i in range(n) for j in range(n) if estimator == "biased" or i != j]
    return sum(brute_kernel(a[i], a[j], kernel, c) for i, j in pairs) / len(pairs)


def brute_across(x: Tensor, y: Tensor, kernel: str, c: float) -> Tensor:
    return sum(brute_kernel(xi, yj, kernel, c) for xi in x for yj in y) / (len(x) * len(y))


def brute_mmd(x: Tensor, y: Tensor, kernel: str, c: float, estimator: str) -> Tensor:
    """Gretton et al. (2012) Eq. 3 (unbiased) and Eq. 5 (biased), pair by pair."""
    within = brute_within(x, kernel, c, estimator) + brute_within(y, kernel, c, estimator)
    return within - 2 * brute_across(x, y, kernel, c)


def brute_median_bandwidth(x: Tensor, y: Tensor) -> float:
    pooled = torch.cat([x, y]).tolist()
    distances = [
        sum((a - b) ** 2 for a, b in zip(pooled[i], pooled[j], strict=True))
        for i in range(len(pooled))
        for j in range(i + 1, len(pooled))
    ]
    return 2 * statistics.median_low(distances)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("rule", [*BANDWIDTH_RULES, 0.8])
@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_each_estimator_is_its_formula_written_out(kernel: str, rule, estimator: str) -> None:
    x, y = samples()
    c = {"dim-squared": DIM**2, "twice-dim": 2 * DIM, "median": None}.get(rule, rule)
    c = brute_median_bandwidth(x.detach(), y.detach()) if c is None else c
    assert math.isclose(float(bandwidth(rule, x, y)), c, rel_tol=1e-12)
    ours = MaximumMeanDiscrepancy(DIM, kernel, rule, estimator)(x, y).estimate
    reference = brute_mmd(x, y, kernel, c, estimator)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)
    for a, b in zip(
        torch.autograd.grad(ours, (x, y)),
        torch.autograd.grad(reference, (x, y)),  # c held fixed: the median carries no gradient
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    if estimator == "biased":
        assert float(ours.detach()) >= 0.0  # a V-statistic is a squared norm


def test_the_authors_kernel_as_their_code_writes_it() -> None:
    """mmd_vae.py: k = exp(-mean_k (a_k - b_k)² / d) and the plain mean of each of the three
    kernel matrices (diagonal included), weight 1: `rbf`, `dim-squared`, `biased` here."""
    x, y = samples(1)

    def their_kernel(a: Tensor, b: Tensor) -> Tensor:
        return torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).mean(-1) / a.shape[-1])

    theirs = their_kernel(x, x).mean() + their_kernel(y, y).mean() - 2 * their_kernel(x, y).mean()
    ours = MaximumMeanDiscrepancy(DIM, "rbf", "dim-squared", "biased")(x, y).estimate
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_the_median_bandwidth_is_per_member() -> None:
    x, y = samples(2, leading=(4,))
    per_member = median_bandwidth(x, y)
    assert per_member.shape == (4,) and not per_member.requires_grad
    for k in range(4):
        assert math.isclose(float(per_member[k]), brute_median_bandwidth(x[k], y[k]), rel_tol=1e-12)
    batched = MaximumMeanDiscrepancy(DIM, "rbf", "median", "biased")(x, y).estimate
    alone = [
        MaximumMeanDiscrepancy(DIM, "rbf", "median", "biased")(x[k], y[k]).estimate
        for k in range(4)
    ]
    torch.testing.assert_close(batched, torch.stack(alone), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_p_side_values_average_to_the_p_dependent_part(kernel: str, estimator: str) -> None:
    """mean_j v_j = 2 · (the yy mean, the estimator's pairs) - 2 · (the xy mean)."""
    x, y = (v.detach() for v in samples(3))
    values = mmd_p_side_values(x, y, kernel, 1.7, estimator)
    expected = 2 * brute_within(y, kernel, 1.7, estimator) - 2 * brute_across(x, y, kernel, 1.7)
    torch.testing.assert_close(values.mean(), expected, rtol=1e-12, atol=1e-14)


def test_bad_kernel_settings_are_one_line_errors_and_members_share_them() -> None:
    base = {"objective": {"preset": "infovae"}}
    for key, value, words in [
        ("kernel_bandwidth", -2.0, "objective.kernel_bandwidth: must be > 0"),
        ("kernel_bandwidth", "huge", "objective.kernel_bandwidth: 'huge' is not one of"),
        ("kernel_estimator", "fast", "objective.kernel_estimator: 'fast' is not one of"),
        ("kernel", "laplace", "objective.kernel: 'laplace' is not one of"),
    ]:
        with pytest.raises(ConfigError, match="^" + words.replace("(", r"\(")) as error:
            experiment_from_dict({"objective": {**base["objective"], key: value}})
        assert "\n" not in str(error.value)
    a = experiment_from_dict(base)
    b = experiment_from_dict({"objective": {"preset": "infovae", "kernel_bandwidth": "median"}})
    assert apart(a, b) == "members differ in objective.kernel_bandwidth"
