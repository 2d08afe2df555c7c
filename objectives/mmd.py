"""MMD² between q-side and p-side samples (Gretton et al. 2012), with its gradient written out.

The maximum mean discrepancy with the inverse multiquadratic or Gaussian (RBF) kernel, each of
one bandwidth c: k = c / (c + D) or exp(-D / c), D = ||a - b||². Two estimators: the unbiased
U-statistic (diagonal left out) and the biased V-statistic (every pair, the diagonal included:
what Zhao et al.'s code computes). How c is chosen: `objectives.kernels`. No discriminator.
Leading axes are a batch: the K members of a population each get their own estimate from one
call (`objectives.record` puts the member axis first); c may be one number or one per member.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Literal

import torch
from torch import Tensor

KERNELS = ("imq", "rbf")
ESTIMATORS = ("unbiased", "biased")
Scale = float | Tensor  # one bandwidth c, or one per leading index (..., ): per member


def squared_distances(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """||a_i - b_j||², (..., N, M), of a (..., N, K) and b (..., M, K) (leading axes batch):
    for K = 1 the difference squared (exact: 0 on a diagonal); otherwise ||a||² + ||b||² - 2 a·b
    clamped at 0, as `torch.cdist`. `out` (no autograd) receives the result."""
    bt = b.transpose(-1, -2)
    if a.shape[-1] == 1:
        return torch.sub(a, bt, out=out).square_()
    d = torch.matmul(a, bt, out=out).mul_(-2.0)
    d.add_(a.square().sum(-1, keepdim=True)).add_(bt.square().sum(-2, keepdim=True))
    return d.clamp_min_(0.0)


def _matrix_scale(scale: Scale) -> Scale:
    """c as it broadcasts against (..., N, M) kernel matrices."""
    return scale[..., None, None] if isinstance(scale, Tensor) else scale


def imq_kernel(a: Tensor, b: Tensor, scale: Scale) -> Tensor:
    """Inverse multiquadratic k(a, b) = c / (c + ||a - b||²), (..., N, M); c = `scale`."""
    c = _matrix_scale(scale)
    return c / (c + squared_distances(a, b))


def rbf_kernel(a: Tensor, b: Tensor, scale: Scale) -> Tensor:
    """Gaussian k(a, b) = exp(-||a - b||² / c), (..., N, M); c = `scale`."""
    return torch.exp(-squared_distances(a, b) / _matrix_scale(scale))


def default_kernel_scale(dim: int, prior_variance: float = 1.0) -> float:
    """c = 2 · dim · σ²: the WAE paper's choice for its IMQ kernel (Tolstikhin et al. 2018,
    Section 4), σ² the prior's variance. (Zhao et al.'s InfoVAE code uses c = dim²:
    `objectives.kernels`.)"""
    return 2.0 * dim * prior_variance


def mmd_unbiased(
    x: Tensor, y: Tensor, kernel: Literal["imq", "rbf"] = "imq", scale: Scale | None = None
) -> Tensor:
    """The unbiased U-statistic of MMD²: `mmd_squared(..., "unbiased")`."""
    return mmd_squared(x, y, kernel, scale, "unbiased")


def mmd_squared(
    x: Tensor,
    y: Tensor,
    kernel: Literal["imq", "rbf"] = "imq",
    scale: Scale | None = None,
    estimator: Literal["unbiased", "biased"] = "unbiased",
) -> Tensor:
    """MMD²(P, Q) from x ~ P (N, K) and y ~ Q (M, K) (Gretton et al. 2012, Eqs. 3 and 5).

    Unbiased (U-statistic): the mean of k(x_i, x_j) over i != j, plus the same for y, minus
    twice the mean of k(x_i, y_j); it can be slightly negative, and its expectation is 0 iff
    P = Q (for a characteristic kernel). Biased (V-statistic): the same with every pair i, j,
    the diagonal included; never negative, and above MMD² by O(1/N) in expectation.
    `scale` (c) defaults to `default_kernel_scale(K)`; a tensor gives one c per leading index.
    Leading axes of x (..., N, K) and y (..., M, K) are a batch: one estimate each, (...), the
    same numbers as one at a time (the population trainer's K members use this). Computed in
    float32 or wider (outside autocast), with its gradient written out (`_MMD`): a few passes
    over each kernel matrix; c carries no gradient.
    """
    assert kernel in KERNELS, f"kernel {kernel!r} is not one of {KERNELS}"
    assert estimator in ESTIMATORS, f"estimator {estimator!r} is not one of {ESTIMATORS}"
    assert x.ndim >= 2 and y.shape[:-2] == x.shape[:-2] and x.shape[-1] == y.shape[-1], (
        f"MMD needs two (..., N, K) sample sets of one K, got {tuple(x.shape)}, {tuple(y.shape)}"
    )
    n, m = x.shape[-2], y.shape[-2]
    assert n > 1 and m > 1, f"MMD needs at least 2 samples a side, got {n} and {m}"
    scale = default_kernel_scale(x.shape[-1]) if scale is None else scale
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    scale = scale.detach().to(dtype) if isinstance(scale, Tensor) else float(scale)
    settings = (kernel, estimator == "biased")
    with torch.autocast(x.device.type, enabled=False):
        needs = (x.requires_grad, y.requires_grad) if torch.is_grad_enabled() else (False, False)
        if any(needs):
            return _MMD.apply(x, y, settings, scale, needs)
        with torch.no_grad():
            return _mmd_blocks(x, y, settings, scale, needs)[0]


class _MMD(torch.autograd.Function):
    """`mmd_squared`, its gradient computed in the forward pass (kernel matrices in cache)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, settings: Any, scale: Scale, needs: Any) -> Tensor:
        value, ctx.grad_x, ctx.grad_y = _mmd_blocks(x, y, settings, scale, needs)
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        g = grad[..., None, None]
        grad_x = None if ctx.grad_x is None else ctx.grad_x * g
        grad_y = None if ctx.grad_y is None else ctx.grad_y * g
        return grad_x, grad_y, None, None, None


def _mmd_blocks(
    x: Tensor, y: Tensor, settings: tuple[str, bool], scale: Scale, needs: tuple[bool, bool]
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """MMD² = α Σ_{i≠j} k(x_i, x_j) + β Σ_{i≠j} k(y_i, y_j) + γ Σ_ij k(x_i, y_j), α =
    1/(N(N-1)), β = 1/(M(M-1)), γ = -2/(NM), and its gradients in x and y where `needs` says;
    `settings` = (kernel, biased). Biased: the sums include i = j and α = 1/N², β = 1/M² (the
    diagonal is a constant, k(a, a) = 1, with no gradient).

    With k_ij = κ(D_ij), D_ij = ||a_i - b_j||², ∂/∂a_i Σ_ij k(a_i, b_j) = 2 Σ_j κ'(D_ij)
    (a_i - b_j) = 2 (a_i Σ_j G_ij - (G b)_i), G = κ'(D) (x against itself counts twice: x_i
    sits on both sides; the diagonal's a_i - a_i is 0). IMQ k = C r with r = 1/(C + D) and
    κ' = -C r²; RBF k = e = exp(-D/c) and κ' = -e/c. G [1 | b] gives Σ_j G_ij and G b
    in one product. Each block is computed in a reused buffer (`_workspace`): fresh memory
    each step (page faults) cost more than the arithmetic."""
    n, m = x.shape[-2], y.shape[-2]
    kernel, biased = settings
    imq, c = kernel == "imq", _matrix_scale(scale)
    value_scale, slope_scale = (c, -c) if imq else (1.0, -1.0 / c)  # κ = value_scale · r or e
    value = x.new_zeros(x.shape[:-2])
    grad_x = torch.zeros_like(x) if needs[0] else None
    grad_y = torch.zeros_like(y) if needs[1] else None
    ext_x, ext_y = (torch.cat([torch.ones_like(v[..., :1]), v], -1) for v in (x, y))
    blocks = (  # a, b, weight, a against itself, where a's and b's gradients go, [1 | a], [1 | b]
        (x, x, 1.0 / (n * n if biased else n * (n - 1)), True, grad_x, None, ext_x, ext_x),
        (y, y, 1.0 / (m * m if biased else m * (m - 1)), True, grad_y, None, ext_y, ext_y),
        (x, y, -2.0 / (n * m), False, grad_x, grad_y, ext_x, ext_y),
    )
    for a, b, weight, same, rows_to, columns_to, ext_a, ext_b in blocks:
        d = squared_distances(a, b, _workspace((*a.shape[:-1], b.shape[-2]), a))
        k = d.add_(c).reciprocal_() if imq else d.div_(c).neg_().exp_()  # r or e
        total = k.sum((-2, -1))
        if same and not biased:
            total = total - k.diagonal(dim1=-2, dim2=-1).sum(-1)
        value = value + total * _vector_scale(value_scale * weight)
        if rows_to is None and columns_to is None:
            continue
        slopes = k.square_() if imq else k  # G / slope_scale
        factor = 2.0 * slope_scale * weight * (2.0 if same else 1.0)
        if rows_to is not None:
            rows = _product(slopes, ext_b)  # (..., N, 1 + K): Σ_j G_ij and (G b)_i
            rows_to.add_((a * rows[..., :1] - rows[..., 1:]).mul_(factor))
        if columns_to is not None:
            columns = _product(slopes.transpose(-1, -2), ext_a)  # (..., M, 1 + K)
            columns_to.add_((b * columns[..., :1] - columns[..., 1:]).mul_(factor))
    return value, grad_x, grad_y


NARROW = 8  # columns below which a product is computed transposed (`_product`)


def _product(m: Tensor, e: Tensor) -> Tensor:
    """m @ e, (..., N, C); for a few columns C (a one- or two-dimensional z) as (eᵀ mᵀ)ᵀ: the
    batched product on the CPU is about twice as slow with a few output columns as with a few
    rows (as for `objectives.stacked.StackedLinear`'s narrow layers)."""
    if e.shape[-1] < NARROW:
        return (e.transpose(-1, -2) @ m.transpose(-1, -2)).transpose(-1, -2)
    return m @ e


def _vector_scale(factor: Scale) -> Scale:
    """A (..., 1, 1) per-member factor as it multiplies a (...) estimate."""
    return factor[..., 0, 0] if isinstance(factor, Tensor) else factor


_WORKSPACE = threading.local()  # .buffer: a flat tensor, reused by `_workspace`
_WORKSPACE_MAX = 2**21  # elements kept between calls (8 MB of float32): training sizes


def _workspace(shape: tuple[int, ...], like: Tensor) -> Tensor | None:
    """A buffer of `shape` reused across calls on this thread (None: allocate afresh)."""
    numel, buffer = math.prod(shape), getattr(_WORKSPACE, "buffer", like[:0])
    if numel > _WORKSPACE_MAX:
        return None
    if buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
        buffer = _WORKSPACE.buffer = like.new_empty(numel)
    return buffer[:numel].view(shape)


def mmd_p_side_values(
    x: Tensor, y: Tensor, kernel: str, scale: Scale, estimator: str = "unbiased"
) -> Tensor:
    """v_j for each p sample y_j, (..., M): ∇ MMD² through the p side is
    E[mean_j v_j ∇ log p(y_j)] with v_j = 2 Σ_{i≠j} k(y_j, y_i)/(M - 1) - 2 mean_i k(x_i, y_j)
    (U-statistic pairs; biased: 2 Σ_i k(y_j, y_i)/M, every pair). v_j depends on the other
    samples, so no leave-one-out baseline applies. Leading axes are a batch, as in
    `mmd_squared`."""
    k = imq_kernel if kernel == "imq" else rbf_kernel
    x, y = x.detach(), y.detach()
    scale = scale.detach() if isinstance(scale, Tensor) else scale
    k_yy, k_xy = k(y, y, scale), k(x, y, scale)
    m = y.shape[-2]
    if estimator == "biased":
        within = k_yy.sum(-2) / m
    else:
        within = (k_yy.sum(-2) - k_yy.diagonal(dim1=-2, dim2=-1)) / (m - 1)
    return 2.0 * within - 2.0 * k_xy.mean(-2)
