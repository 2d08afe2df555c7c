"""The MMD both trainers share (objectives/divergences.py `mmd_unbiased`): the U-statistic and
its written-out gradient against the textbook formula, and a batch of K sample-set pairs
(the population's members) against K separate calls."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from objectives.mmd import mmd_unbiased


def textbook(x: Tensor, y: Tensor, kernel: str, scale: float) -> Tensor:
    """Gretton et al. (2012), Eq. 3, with `torch.cdist` and autograd."""

    def k(a: Tensor, b: Tensor) -> Tensor:
        squared = torch.cdist(a, b).pow(2)
        return scale / (scale + squared) if kernel == "imq" else torch.exp(-squared / scale)

    n, m = len(x), len(y)
    k_xx, k_yy, k_xy = k(x, x), k(y, y), k(x, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean()


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("dim", [1, 3])
def test_the_mmd_and_its_gradient_are_the_textbook_ones(kernel: str, dim: int) -> None:
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(30, dim, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(20, dim, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    ours, reference = mmd_unbiased(x, y, kernel, 2.0), textbook(x, y, kernel, 2.0)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)
    expected = torch.autograd.grad(reference, (x, y))
    for a, b in zip(torch.autograd.grad(ours, (x, y)), expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(lambda a, b: mmd_unbiased(a, b, kernel, 2.0), (x, y))
    with torch.no_grad():  # no gradient asked: the same value by the gradient-free path
        assert mmd_unbiased(x, y, kernel, 2.0) == ours.detach()


@pytest.mark.parametrize("dim", [1, 4])
def test_a_batch_of_sample_sets_is_each_set_alone(dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 40, dim, generator=g, requires_grad=True)  # (K, N, Z)
    y = torch.randn(5, 40, dim, generator=g, requires_grad=True)
    batched = mmd_unbiased(x, y)
    alone = torch.stack([mmd_unbiased(x[k], y[k]) for k in range(5)])
    torch.testing.assert_close(batched, alone, rtol=1e-6, atol=1e-7)
    assert mmd_unbiased(x[:1], y[:1])[0] == alone[0]  # one set in a batch: the same number
    grads = torch.autograd.grad(batched.sum(), (x, y))
    for k in range(5):
        single = torch.autograd.grad(mmd_unbiased(x[k], y[k]), (x, y))
        torch.testing.assert_close(grads[0][k], single[0][k], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(grads[1][k], single[1][k], rtol=1e-5, atol=1e-7)


def test_a_sample_set_against_itself() -> None:
    """x passed as both sides: the cross term keeps its diagonal, the gradients add up."""
    x = torch.randn(25, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x.requires_grad_()
    ours, reference = mmd_unbiased(x, x, "imq", 2.0), textbook(x, x, "imq", 2.0)
    torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-14)
    expected = torch.autograd.grad(reference, x)[0]
    torch.testing.assert_close(torch.autograd.grad(ours, x)[0], expected, rtol=1e-10, atol=1e-14)
