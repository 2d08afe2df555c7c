"""Likelihood-free divergences (paper Definition 7, T2 and T3; Section 3.4).

Each divergence compares samples of a q side (data x, z ~ q(z|x), or their pair) with samples of
a p side (z ~ p(z), x ~ p(x|z), or their pair) and returns a `DivergenceOutput`: the reported
estimate, a surrogate whose gradient is the divergence's gradient for the trainable sides, and,
when it has one, its discriminator's loss (computed on detached samples).

- KL by density-ratio estimation (Sugiyama et al. 2012; the "density ratio trick" of AVB,
  Mescheder et al. 2017): a classifier trained with the logistic loss, q samples labelled 1 and
  p samples 0, has logit r(v) -> log q(v)/p(v). Then KL(q||p) = E_q[r] and KL(p||q) = -E_p[r].
  The side the estimate does not sample still gets its gradient through the dual identity
  ∇_θ KL(q||p_θ) = -∇_θ E_{p_θ}[e^r] (r held fixed), and ∇_φ KL(p||q_φ) = -∇_φ E_{q_φ}[e^-r];
  this is the f-GAN variational form (Nowozin et al. 2016) added with value zero.
- JS by the GAN game (Goodfellow et al. 2014): the discriminator minimises the binary
  cross-entropy; the estimate is log 2 - ½(BCE_q + BCE_p). The model side, by default
  (`js_gradient: minimax`), descends that estimate itself: at the optimal discriminator its
  gradient in the samples is ∇JS (the discriminator's own dependence drops out, the envelope
  theorem), so λ multiplies JS as the Lagrangian says. `non-saturating` is the GAN heuristic
  (each side tries to be taken for the other): stronger gradients early, but its gradient is
  not λ ∇JS (it is that of KL(p||m)-like terms), so λ then weighs a different divergence.
- MMD² by the unbiased U-statistic (Gretton et al. 2012) with the inverse multiquadratic or RBF
  kernel; no discriminator.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from objectives.config import ModelConfig
from objectives.networks import Discriminator

LOG_2 = math.log(2.0)
MAX_RATIO_LOGIT = 10.0  # e^r of the dual-side gradient is capped at e^10: a variance guard
KERNELS = ("imq", "rbf")


class DivergenceOutput(NamedTuple):
    estimate: Tensor  # scalar: the divergence's value (reported)
    surrogate: Tensor  # scalar with the estimate's value and the divergence's gradient in p, q
    discriminator_loss: Tensor | None  # scalar, gradient only to the discriminator; None: none
    # (B,) per p-side sample: the values f(v_p) whose mean is the part of the surrogate that
    # depends on the p samples (for the score-function gradient); None unless asked for
    p_values: Tensor | None = None


# --------------------------------------------------------------------------- pure functions


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


def imq_kernel(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """Inverse multiquadratic k(a, b) = C / (C + ||a - b||²), (..., N, M); C = `scale`."""
    return scale / (scale + squared_distances(a, b))


def rbf_kernel(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """Gaussian k(a, b) = exp(-||a - b||² / (2 h)), (..., N, M); h = `scale`."""
    return torch.exp(squared_distances(a, b) / (-2.0 * scale))


def default_kernel_scale(dim: int, prior_variance: float = 1.0) -> float:
    """C = h = 2 · dim · σ², the choice of WAE (Tolstikhin et al. 2018, Section 4) and InfoVAE."""
    return 2.0 * dim * prior_variance


def mmd_unbiased(
    x: Tensor, y: Tensor, kernel: Literal["imq", "rbf"] = "imq", scale: float | None = None
) -> Tensor:
    """Unbiased U-statistic of MMD²(P, Q) from x ~ P (N, K) and y ~ Q (M, K) (Gretton 2012, Eq. 3).

    Mean of k(x_i, x_j) over i != j, plus the same for y, minus twice the mean of k(x_i, y_j).
    It can be slightly negative; its expectation is 0 iff P = Q (for a characteristic kernel).
    `scale` defaults to `default_kernel_scale(K)`. Leading axes of x (..., N, K) and y
    (..., M, K) are a batch: one estimate each, (...), the same numbers as one at a time (the
    population trainer's K members use this). Computed in float32 or wider (outside autocast),
    with its gradient written out (`_MMD`): a few passes over each kernel matrix.
    """
    assert kernel in KERNELS, f"kernel {kernel!r} is not one of {KERNELS}"
    assert x.ndim >= 2 and y.shape[:-2] == x.shape[:-2] and x.shape[-1] == y.shape[-1], (
        f"MMD needs two (..., N, K) sample sets of one K, got {tuple(x.shape)}, {tuple(y.shape)}"
    )
    n, m = x.shape[-2], y.shape[-2]
    assert n > 1 and m > 1, f"the U-statistic needs at least 2 samples a side, got {n} and {m}"
    scale = default_kernel_scale(x.shape[-1]) if scale is None else scale
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y, scale = x.to(dtype), y.to(dtype), float(scale)
    with torch.autocast(x.device.type, enabled=False):
        needs = (x.requires_grad, y.requires_grad) if torch.is_grad_enabled() else (False, False)
        if any(needs):
            return _MMD.apply(x, y, kernel, scale, needs)
        with torch.no_grad():
            return _mmd_blocks(x, y, kernel, scale, needs)[0]


class _MMD(torch.autograd.Function):
    """`mmd_unbiased`, its gradient computed in the forward pass (kernel matrices in cache)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, kernel: str, scale: float, needs: Any) -> Tensor:
        value, ctx.grad_x, ctx.grad_y = _mmd_blocks(x, y, kernel, scale, needs)
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        g = grad[..., None, None]
        grad_x = None if ctx.grad_x is None else ctx.grad_x * g
        grad_y = None if ctx.grad_y is None else ctx.grad_y * g
        return grad_x, grad_y, None, None, None


def _mmd_blocks(
    x: Tensor, y: Tensor, kernel: str, scale: float, needs: tuple[bool, bool]
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """MMD² = α Σ_{i≠j} k(x_i, x_j) + β Σ_{i≠j} k(y_i, y_j) + γ Σ_ij k(x_i, y_j), α =
    1/(N(N-1)), β = 1/(M(M-1)), γ = -2/(NM), and its gradients in x and y where `needs` says.

    With k_ij = κ(D_ij), D_ij = ||a_i - b_j||², ∂/∂a_i Σ_ij k(a_i, b_j) = 2 Σ_j κ'(D_ij)
    (a_i - b_j) = 2 (a_i Σ_j G_ij - (G b)_i), G = κ'(D) (x against itself counts twice: x_i
    sits on both sides; the diagonal's a_i - a_i is 0). IMQ k = C r with r = 1/(C + D) and
    κ' = -C r²; RBF k = e = exp(-D/(2h)) and κ' = -e/(2h). G [1 | b] gives Σ_j G_ij and G b
    in one product. Each block is computed in a reused buffer (`_workspace`): fresh memory
    each step (page faults) cost more than the arithmetic."""
    n, m = x.shape[-2], y.shape[-2]
    imq = kernel == "imq"
    value_scale, slope_scale = (scale, -scale) if imq else (1.0, -0.5 / scale)
    value = x.new_zeros(x.shape[:-2])
    grad_x = torch.zeros_like(x) if needs[0] else None
    grad_y = torch.zeros_like(y) if needs[1] else None
    ext_x, ext_y = (torch.cat([torch.ones_like(v[..., :1]), v], -1) for v in (x, y))
    blocks = (  # a, b, weight, a against itself, where a's and b's gradients go, [1 | a], [1 | b]
        (x, x, 1.0 / (n * (n - 1)), True, grad_x, None, ext_x, ext_x),
        (y, y, 1.0 / (m * (m - 1)), True, grad_y, None, ext_y, ext_y),
        (x, y, -2.0 / (n * m), False, grad_x, grad_y, ext_x, ext_y),
    )
    for a, b, weight, same, rows_to, columns_to, ext_a, ext_b in blocks:
        d = squared_distances(a, b, _workspace((*a.shape[:-1], b.shape[-2]), a))
        k = d.add_(scale).reciprocal_() if imq else d.mul_(-0.5 / scale).exp_()  # r or e
        total = k.sum((-2, -1))
        if same:
            total = total - k.diagonal(dim1=-2, dim2=-1).sum(-1)
        value = value + total * (value_scale * weight)
        if rows_to is None and columns_to is None:
            continue
        slopes = k.square_() if imq else k  # G / slope_scale
        factor = 2.0 * slope_scale * weight * (2.0 if same else 1.0)
        if rows_to is not None:
            rows = slopes @ ext_b  # (..., N, 1 + K): Σ_j G_ij and (G b)_i
            rows_to.add_((a * rows[..., :1] - rows[..., 1:]).mul_(factor))
        if columns_to is not None:
            columns = slopes.transpose(-1, -2) @ ext_a  # (..., M, 1 + K)
            columns_to.add_((b * columns[..., :1] - columns[..., 1:]).mul_(factor))
    return value, grad_x, grad_y


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


def discriminator_bce(logits_q: Tensor, logits_p: Tensor) -> tuple[Tensor, Tensor]:
    """(BCE_q, BCE_p): -E_q log D and -E_p log(1 - D) with D = sigmoid(logit), q labelled 1."""
    return F.softplus(-logits_q).mean(-1), F.softplus(logits_p).mean(-1)


def density_ratio_kl(logits_q: Tensor) -> Tensor:
    """KL(q||p) ≈ E_q[r] where r = log q/p is a trained classifier's logit."""
    return logits_q.mean(-1)


def reverse_density_ratio_kl(logits_p: Tensor) -> Tensor:
    """KL(p||q) ≈ -E_p[r] where r = log q/p is a trained classifier's logit."""
    return -logits_p.mean(-1)


def js_estimate(logits_q: Tensor, logits_p: Tensor) -> Tensor:
    """JS(q||p) ≈ log 2 - ½(BCE_q + BCE_p): exact at the optimal discriminator (Goodfellow 2014)."""
    bce_q, bce_p = discriminator_bce(logits_q, logits_p)
    return LOG_2 - 0.5 * (bce_q + bce_p)


def with_gradient_of(value: Tensor, extra: Tensor) -> Tensor:
    """`value`, differentiated as `value + extra` (adds extra's gradient, not its value)."""
    return value + (extra - extra.detach())


# --------------------------------------------------------------------------- modules


JS_GRADIENTS = ("minimax", "non-saturating")


class AdversarialDivergence(nn.Module):
    """KL(q||p), KL(p||q) or JS(q||p) with its own discriminator (logit ≈ log q/p)."""

    def __init__(
        self,
        kind: Literal["KL(q||p)", "KL(p||q)", "JS"],
        dim: int,
        config: ModelConfig,
        js_gradient: Literal["minimax", "non-saturating"] = "minimax",
    ):
        super().__init__()
        assert kind in ("KL(q||p)", "KL(p||q)", "JS"), f"unknown adversarial divergence {kind!r}"
        assert js_gradient in JS_GRADIENTS, f"js_gradient {js_gradient!r} not in {JS_GRADIENTS}"
        self.kind = kind
        self.js_gradient = js_gradient
        self.discriminator = Discriminator(dim, config)

    def frozen_logits(self, v: Tensor) -> Tensor:
        """Discriminator logits through which gradient reaches v but not the discriminator."""
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (v,))  # (B,)

    def discriminator_loss(self, q_samples: Tensor, p_samples: Tensor) -> Tensor:
        """Logistic loss of the classifier q -> 1, p -> 0, on detached samples."""
        logits_q = self.discriminator(q_samples.detach())
        logits_p = self.discriminator(p_samples.detach())
        bce_q, bce_p = discriminator_bce(logits_q, logits_p)
        return bce_q + bce_p

    def forward(
        self, q_samples: Tensor, p_samples: Tensor, per_sample: bool = False
    ) -> DivergenceOutput:
        """The estimate, its surrogate, the discriminator's loss and, with `per_sample`, the
        p side's per-sample values (see `DivergenceOutput`)."""
        r_q, r_p = self.frozen_logits(q_samples), self.frozen_logits(p_samples)  # (B,) each
        estimate, surrogate = adversarial_estimate(self.kind, self.js_gradient, r_q, r_p)
        p_values = self.p_side_values(r_p) if per_sample else None
        disc_loss = self.discriminator_loss(q_samples, p_samples)
        return DivergenceOutput(estimate, surrogate, disc_loss, p_values)

    def p_side_values(self, r_p: Tensor) -> Tensor:
        """f(v_p) per p sample, (B,): the surrogate's p-side part is their mean."""
        return adversarial_p_values(self.kind, self.js_gradient, r_p)


def adversarial_estimate(
    kind: str, js_gradient: str, r_q: Tensor, r_p: Tensor
) -> tuple[Tensor, Tensor]:
    """(estimate, surrogate) of an adversarial divergence from the discriminator's frozen logits
    r_q, r_p (..., B): one pair per leading index (the population's members)."""
    if kind == "KL(q||p)":
        estimate = density_ratio_kl(r_q)
        dual = -torch.exp(r_p.clamp(max=MAX_RATIO_LOGIT)).mean(-1)  # p side: -E_p[q/p]
        return estimate, with_gradient_of(estimate, dual)
    if kind == "KL(p||q)":
        estimate = reverse_density_ratio_kl(r_p)
        dual = -torch.exp((-r_q).clamp(max=MAX_RATIO_LOGIT)).mean(-1)  # q side: -E_q[p/q]
        return estimate, with_gradient_of(estimate, dual)
    estimate = js_estimate(r_q, r_p)
    if js_gradient == "minimax":
        return estimate, estimate  # the game's value: ∇ = ∇JS at D*
    # Non-saturating: q samples aim for label 0 and p samples for label 1.
    fooling = 0.5 * (F.softplus(r_q).mean(-1) + F.softplus(-r_p).mean(-1))
    return estimate, with_gradient_of(estimate.detach(), fooling)


def adversarial_p_values(kind: str, js_gradient: str, r_p: Tensor) -> Tensor:
    """f(v_p) per p sample, (..., B): the surrogate's p-side part is their mean."""
    if kind == "KL(q||p)":
        return -torch.exp(r_p.clamp(max=MAX_RATIO_LOGIT))  # the dual side -E_p[q/p]
    if kind == "KL(p||q)":
        return -r_p  # the estimate -E_p[r]
    if js_gradient == "minimax":
        return -0.5 * F.softplus(r_p)  # -½ BCE_p of the estimate
    return 0.5 * F.softplus(-r_p)  # the non-saturating p side


class MaximumMeanDiscrepancy(nn.Module):
    """MMD²(q||p) by the unbiased U-statistic; differentiable in both sample sets."""

    def __init__(self, dim: int, kernel: Literal["imq", "rbf"] = "imq", scale: float | None = None):
        super().__init__()
        assert kernel in KERNELS, f"kernel {kernel!r} is not one of {KERNELS}"
        self.kernel = kernel
        self.scale = default_kernel_scale(dim) if scale is None else scale

    def forward(
        self, q_samples: Tensor, p_samples: Tensor, per_sample: bool = False
    ) -> DivergenceOutput:
        estimate = mmd_unbiased(q_samples, p_samples, self.kernel, self.scale)
        p_values = self.p_side_values(q_samples, p_samples) if per_sample else None
        return DivergenceOutput(estimate, estimate, None, p_values)

    def p_side_values(self, x: Tensor, y: Tensor) -> Tensor:
        """v_j for each p sample y_j, (..., M): ∇ MMD² through the p side is
        E[mean_j v_j ∇ log p(y_j)] with v_j = 2 Σ_{i≠j} k(y_j, y_i)/(M - 1) - 2 mean_i k(x_i, y_j)
        (U-statistic pairs). v_j depends on the other samples, so no leave-one-out baseline
        applies. Leading axes are a batch, as in `mmd_unbiased`."""
        k = imq_kernel if self.kernel == "imq" else rbf_kernel
        x, y = x.detach(), y.detach()
        k_yy, k_xy = k(y, y, self.scale), k(x, y, self.scale)
        within = (k_yy.sum(-2) - k_yy.diagonal(dim1=-2, dim2=-1)) / (y.shape[-2] - 1)
        return 2.0 * within - 2.0 * k_xy.mean(-2)
