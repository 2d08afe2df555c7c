"""Likelihood-free divergences (paper Definition 7, T2 and T3; Section 3.4), for K members.

Each divergence compares samples of a q side (data x, z ~ q(z|x), or their pair) with samples of
a p side (z ~ p(z), x ~ p(x|z), or their pair), each (K, B, ·), and returns a
`DivergenceOutput` of (K,) vectors: the reported estimate, a surrogate whose gradient is the
divergence's gradient for the trainable sides, and, when it has one, its discriminator's loss
(computed on detached samples).

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
  not λ ∇JS, so λ then weighs a different divergence.
- MMD² by the unbiased U-statistic or the biased V-statistic (`objectives.mmd`), with the
  bandwidth of `objectives.kernels`; no discriminator.

`ADVERSARIAL` is the registry of adversarial kinds: a new one is one `Game` entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objectives.kernels import bandwidth, fixed_bandwidth
from objectives.mmd import ESTIMATORS, KERNELS, mmd_p_side_values, mmd_squared
from objectives.networks import Discriminator
from objectives.stacked import StackedMLP

LOG_2 = math.log(2.0)
MAX_RATIO_LOGIT = 10.0  # e^r of the dual-side gradient is capped at e^10: a variance guard
JS_GRADIENTS = ("minimax", "non-saturating")


class DivergenceOutput(NamedTuple):
    estimate: Tensor  # (K,): the divergence's value (reported)
    surrogate: Tensor  # (K,), the estimate's value with the divergence's gradient in p, q
    discriminator_loss: Tensor | None  # (K,), gradient only to the discriminator; None: none
    # (K, B) per p-side sample: the values f(v_p) whose mean is the part of the surrogate that
    # depends on the p samples (for the score-function gradient); None unless asked for
    p_values: Tensor | None = None


# --------------------------------------------------------------------------- pure functions


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


def _kl_qp(r_q: Tensor, r_p: Tensor) -> tuple[Tensor, Tensor]:
    estimate = density_ratio_kl(r_q)
    dual = -torch.exp(r_p.clamp(max=MAX_RATIO_LOGIT)).mean(-1)  # p side: -E_p[q/p]
    return estimate, with_gradient_of(estimate, dual)


def _kl_pq(r_q: Tensor, r_p: Tensor) -> tuple[Tensor, Tensor]:
    estimate = reverse_density_ratio_kl(r_p)
    dual = -torch.exp((-r_q).clamp(max=MAX_RATIO_LOGIT)).mean(-1)  # q side: -E_q[p/q]
    return estimate, with_gradient_of(estimate, dual)


def _js_minimax(r_q: Tensor, r_p: Tensor) -> tuple[Tensor, Tensor]:
    estimate = js_estimate(r_q, r_p)
    return estimate, estimate  # the game's value: ∇ = ∇JS at D*


def _js_non_saturating(r_q: Tensor, r_p: Tensor) -> tuple[Tensor, Tensor]:
    estimate = js_estimate(r_q, r_p)  # q samples aim for label 0 and p samples for label 1
    fooling = 0.5 * (F.softplus(r_q).mean(-1) + F.softplus(-r_p).mean(-1))
    return estimate, with_gradient_of(estimate.detach(), fooling)


class Game(NamedTuple):
    """One adversarial kind: (estimate, surrogate) from the frozen logits r_q, r_p (K, B), and
    f(v_p) per p sample (K, B), the values whose mean is the surrogate's p-side part."""

    estimate: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    p_values: Callable[[Tensor], Tensor]


ADVERSARIAL: dict[tuple[str, str | None], Game] = {  # (kind, js_gradient or None) -> game
    ("KL(q||p)", None): Game(_kl_qp, lambda r_p: -torch.exp(r_p.clamp(max=MAX_RATIO_LOGIT))),
    ("KL(p||q)", None): Game(_kl_pq, lambda r_p: -r_p),
    ("JS", "minimax"): Game(_js_minimax, lambda r_p: -0.5 * F.softplus(r_p)),
    ("JS", "non-saturating"): Game(_js_non_saturating, lambda r_p: 0.5 * F.softplus(-r_p)),
}


def game(kind: str, js_gradient: str = "minimax") -> Game:
    """The registry's entry for `kind` (the JS gradient matters for JS only)."""
    key = (kind, js_gradient if kind == "JS" else None)
    assert key in ADVERSARIAL, f"unknown adversarial divergence {kind!r} ({js_gradient})"
    return ADVERSARIAL[key]


# --------------------------------------------------------------------------- modules


class AdversarialDivergence(nn.Module):
    """KL(q||p), KL(p||q) or JS(q||p) for K members, each with its own discriminator (logit ≈
    log q/p): the members' `Discriminator`s (initialised under each member's seed) stacked."""

    def __init__(
        self,
        kind: Literal["KL(q||p)", "KL(p||q)", "JS"],
        discriminators: Sequence[Discriminator],
        js_gradient: Literal["minimax", "non-saturating"] = "minimax",
    ) -> None:
        super().__init__()
        assert js_gradient in JS_GRADIENTS, f"js_gradient {js_gradient!r} not in {JS_GRADIENTS}"
        self.kind, self.js_gradient = kind, js_gradient
        self.game = game(kind, js_gradient)
        self.discriminator = StackedMLP([d.net for d in discriminators])

    def logits(self, v: Tensor, frozen: bool = False) -> Tensor:
        """(K, B) logits; `frozen`: the gradient reaches v but not the discriminator."""
        return self.discriminator(v, frozen).squeeze(-1)

    def discriminator_loss(self, q_samples: Tensor, p_samples: Tensor) -> Tensor:
        """Each member's logistic loss q -> 1, p -> 0 on detached samples, (K,)."""
        bce_q, bce_p = discriminator_bce(
            self.logits(q_samples.detach()), self.logits(p_samples.detach())
        )
        return bce_q + bce_p

    def forward(
        self, q_samples: Tensor, p_samples: Tensor, per_sample: bool = False
    ) -> DivergenceOutput:
        """The estimate, its surrogate, the discriminator's loss and, with `per_sample`, the
        p side's per-sample values (see `DivergenceOutput`)."""
        r_q, r_p = self.logits(q_samples, True), self.logits(p_samples, True)  # (K, B) each
        estimate, surrogate = self.game.estimate(r_q, r_p)
        p_values = self.game.p_values(r_p) if per_sample else None
        disc_loss = self.discriminator_loss(q_samples, p_samples)
        return DivergenceOutput(estimate, surrogate, disc_loss, p_values)


class MaximumMeanDiscrepancy(nn.Module):
    """MMD²(q||p) by the unbiased U-statistic (or the biased V-statistic), differentiable in
    both sample sets; the bandwidth by a rule of `objectives.kernels` (default: c = 2 · dim)."""

    def __init__(
        self,
        dim: int,
        kernel: Literal["imq", "rbf"] = "imq",
        bandwidth: str | float = "twice-dim",
        estimator: Literal["unbiased", "biased"] = "unbiased",
    ):
        super().__init__()
        assert kernel in KERNELS, f"kernel {kernel!r} is not one of {KERNELS}"
        assert estimator in ESTIMATORS, f"estimator {estimator!r} is not one of {ESTIMATORS}"
        self.kernel, self.bandwidth, self.estimator = kernel, bandwidth, estimator
        self.scale = fixed_bandwidth(bandwidth, dim)  # None: the median, per batch

    def forward(
        self, q_samples: Tensor, p_samples: Tensor, per_sample: bool = False
    ) -> DivergenceOutput:
        scale = self.scale
        if scale is None:
            scale = bandwidth(self.bandwidth, q_samples.detach(), p_samples.detach())
        estimate = mmd_squared(q_samples, p_samples, self.kernel, scale, self.estimator)
        p_values = None
        if per_sample:
            p_values = mmd_p_side_values(q_samples, p_samples, self.kernel, scale, self.estimator)
        return DivergenceOutput(estimate, estimate, None, p_values)
