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
from typing import Literal, NamedTuple

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


def imq_kernel(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """Inverse multiquadratic k(a, b) = C / (C + ||a - b||²), (N, M); C = `scale`."""
    return scale / (scale + torch.cdist(a, b).pow(2))


def rbf_kernel(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """Gaussian k(a, b) = exp(-||a - b||² / (2 h)), (N, M); h = `scale`."""
    return torch.exp(-torch.cdist(a, b).pow(2) / (2.0 * scale))


def default_kernel_scale(dim: int, prior_variance: float = 1.0) -> float:
    """C = h = 2 · dim · σ², the choice of WAE (Tolstikhin et al. 2018, Section 4) and InfoVAE."""
    return 2.0 * dim * prior_variance


def mmd_unbiased(
    x: Tensor, y: Tensor, kernel: Literal["imq", "rbf"] = "imq", scale: float | None = None
) -> Tensor:
    """Unbiased U-statistic of MMD²(P, Q) from x ~ P (N, K) and y ~ Q (M, K) (Gretton 2012, Eq. 3).

    Mean of k(x_i, x_j) over i != j, plus the same for y, minus twice the mean of k(x_i, y_j).
    It can be slightly negative; its expectation is 0 iff P = Q (for a characteristic kernel).
    `scale` defaults to `default_kernel_scale(K)`.
    """
    assert kernel in KERNELS, f"kernel {kernel!r} is not one of {KERNELS}"
    assert x.ndim == 2 and y.ndim == 2 and x.shape[1] == y.shape[1], (
        f"MMD needs two (N, K) sample sets of the same K, got {tuple(x.shape)} and {tuple(y.shape)}"
    )
    n, m = len(x), len(y)
    assert n > 1 and m > 1, f"the U-statistic needs at least 2 samples a side, got {n} and {m}"
    scale = default_kernel_scale(x.shape[1]) if scale is None else scale
    k = imq_kernel if kernel == "imq" else rbf_kernel
    k_xx, k_yy, k_xy = k(x, x, scale), k(y, y, scale), k(x, y, scale)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2.0 * k_xy.mean()


def discriminator_bce(logits_q: Tensor, logits_p: Tensor) -> tuple[Tensor, Tensor]:
    """(BCE_q, BCE_p): -E_q log D and -E_p log(1 - D) with D = sigmoid(logit), q labelled 1."""
    return F.softplus(-logits_q).mean(), F.softplus(logits_p).mean()


def density_ratio_kl(logits_q: Tensor) -> Tensor:
    """KL(q||p) ≈ E_q[r] where r = log q/p is a trained classifier's logit."""
    return logits_q.mean()


def reverse_density_ratio_kl(logits_p: Tensor) -> Tensor:
    """KL(p||q) ≈ -E_p[r] where r = log q/p is a trained classifier's logit."""
    return -logits_p.mean()


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
        if self.kind == "KL(q||p)":
            estimate = density_ratio_kl(r_q)
            dual = -torch.exp(r_p.clamp(max=MAX_RATIO_LOGIT)).mean()  # p side: -E_p[q/p]
            surrogate = with_gradient_of(estimate, dual)
        elif self.kind == "KL(p||q)":
            estimate = reverse_density_ratio_kl(r_p)
            dual = -torch.exp((-r_q).clamp(max=MAX_RATIO_LOGIT)).mean()  # q side: -E_q[p/q]
            surrogate = with_gradient_of(estimate, dual)
        elif self.js_gradient == "minimax":
            estimate = surrogate = js_estimate(r_q, r_p)  # the game's value: ∇ = ∇JS at D*
        else:
            estimate = js_estimate(r_q, r_p)
            # Non-saturating: q samples aim for label 0 and p samples for label 1.
            fooling = 0.5 * (F.softplus(r_q).mean() + F.softplus(-r_p).mean())
            surrogate = with_gradient_of(estimate.detach(), fooling)
        p_values = self.p_side_values(r_p) if per_sample else None
        disc_loss = self.discriminator_loss(q_samples, p_samples)
        return DivergenceOutput(estimate, surrogate, disc_loss, p_values)

    def p_side_values(self, r_p: Tensor) -> Tensor:
        """f(v_p) per p sample, (B,): the surrogate's p-side part is their mean."""
        if self.kind == "KL(q||p)":
            return -torch.exp(r_p.clamp(max=MAX_RATIO_LOGIT))  # the dual side -E_p[q/p]
        if self.kind == "KL(p||q)":
            return -r_p  # the estimate -E_p[r]
        if self.js_gradient == "minimax":
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
        """v_j for each p sample y_j, (M,): ∇ MMD² through the p side is E[mean_j v_j ∇ log p(y_j)]
        with v_j = 2 Σ_{i≠j} k(y_j, y_i)/(M - 1) - 2 mean_i k(x_i, y_j) (U-statistic pairs).
        v_j depends on the other samples, so no leave-one-out baseline applies."""
        k = imq_kernel if self.kernel == "imq" else rbf_kernel
        x, y = x.detach(), y.detach()
        k_yy, k_xy = k(y, y, self.scale), k(x, y, self.scale)
        within = (k_yy.sum(0) - k_yy.diagonal()) / (len(y) - 1)
        return 2.0 * within - 2.0 * k_xy.mean(0)
