"""One step's shared forward pass (`ForwardRecord`) and the likelihood terms of the family.

The likelihood-based toolbox T1 (paper Definition 7): each term is a small pure function of a
`ForwardRecord`, whose quantities (q(z|x), z ~ q(z|x), z ~ p(z), x ~ p(x|z), ...) are computed
lazily, only when some term reads them. Every tensor has a leading member axis: x is (K, B, D)
and each term is (K,), one estimate per member (a plain run is K = 1).

The noise is passed in, drawn per member from that member's own generator (`draw_noise`) in
the order `draw_order` gives, so a member's draws depend on nothing but its own stream.

Estimator choices (Section 3.1: pathwise gradients, Kingma & Welling 2013):
- E_q terms use z ~ q(z|x) reparameterised. Under the Gaussian encoder E_q[log q(z|x)] (the
  negative entropy) and E_q[log p(z)] are analytic: the same expectation and expected gradient
  as the Monte Carlo estimate, with no variance.
- E_p terms need x ~ p(x|z) to carry gradient. E_p[log p(x|z)] is the analytic negative entropy
  of p(x|z). Where x feeds q(z|x), a discriminator or a kernel, a Gaussian x is
  reparameterised. A Bernoulli x is by default (`x_gradient="score-function"`, Section 3.1: the
  likelihood-ratio gradient, Williams 1992) a hard draw without pathwise gradient, and every
  term that reads it adds a zero-valued surrogate whose gradient is E_p[(f(x) - b) ∇ log
  p(x|z)], b the leave-one-out mean of f: unbiased, at the cost of variance. With
  `x_gradient="straight-through"` it is the binary Concrete draw at temperature 0.5 (Maddison
  et al. 2017; Jang et al. 2017) thresholded at ½ (an exact Bernoulli sample) in value, the
  relaxed draw in gradient: biased. Either way generated x, like binarised data, lies in
  {0, 1}, and every reported estimate is of the true term.
  E_p[log p(z)] = -Z/2 (log 2π + 1) is a constant (Definition 8 drops it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import Tensor

from objectives.networks import (
    LOG_2PI,
    RELAXED_TEMPERATURE,
    Bernoulli,
    DiagonalGaussian,
    standard_normal_log_prob,
)
from objectives.stacked import StackedModel

Variables = Literal["x", "z", "x,z", "x;z"]  # x;z: (x, z ~ q(z|x)) against (x, z ~ p(z))
XGradient = Literal["straight-through", "score-function"]
# The noise each variable set reads, in first-use order ("z_q": ε of z ~ q(z|x), or the ε an
# implicit encoder takes; "z_p": z ~ p(z); "x_p": the noise of x ~ p(x|z), after z_p)
VARIABLE_DRAWS: dict[str, tuple[str, ...]] = {
    "z": ("z_q", "z_p"),
    "x": ("z_p", "x_p"),
    "x,z": ("z_q", "z_p", "x_p"),
    "x;z": ("z_q", "z_p"),
}


# --------------------------------------------------------------------------- closed forms


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, σ²) || N(0, I)) summed over the last axis: the rate of Eq. (1) per x."""
    return 0.5 * (torch.exp(logvar) + mu**2 - 1.0 - logvar).sum(-1)


def gaussian_cross_entropy_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """E_{N(mu, σ²)}[log N(z; 0, I)] = -½ Σ (log 2π + mu² + σ²), summed over the last axis."""
    return -0.5 * (LOG_2PI + mu**2 + torch.exp(logvar)).sum(-1)


def score_function_surrogate(values: Tensor, log_prob: Tensor, baseline: bool = True) -> Tensor:
    """Zero in value; its gradient is the likelihood-ratio estimate of ∇ E_{x~p}[f(x)], (K,).

    values: f(x_i) per sample (K, B), taken as constants; log_prob: log p(x_i|z_i) (K, B),
    carrying the gradient. With `baseline`, each f(x_i) is centred by the mean of the others (a
    baseline independent of x_i keeps the estimate unbiased); only valid when f(x_i) does not
    depend on the other samples.
    """
    f = values.detach()
    if baseline and f.shape[-1] > 1:
        f = f - (f.sum(-1, keepdim=True) - f) / (f.shape[-1] - 1)
    term = (f * log_prob).mean(-1)
    return term - term.detach()


# --------------------------------------------------------------------------- noise


def draw_order(reads: Sequence[tuple[str, ...]]) -> list[str]:
    """The noise names in first-use order over `reads` (each term's draws, in term order)."""
    order: list[str] = []
    for draws in reads:
        for name in draws:
            if name not in order:
                order.append(name)
    return order


def draw_noise(
    order: Sequence[str],
    generators: Sequence[torch.Generator],
    like: Tensor,
    dims: Mapping[str, int],
    uniform: frozenset[str] = frozenset(),
) -> dict[str, Tensor]:
    """Each member's noise, (K, B, dims[name]) per name: member k's draws from generators[k],
    in `order`; N(0, I), or U(0, 1) for the names in `uniform` (a Bernoulli x ~ p(x|z)).
    `like` is the data batch (K, B, D)."""
    k_members, batch = like.shape[:2]
    noise = {}
    for name in order:
        buffer = like.new_empty((k_members, batch, dims[name]))
        if k_members == 1 and generators[0].device == like.device:  # the same draws, one op
            noise[name] = _fill(buffer, name in uniform, generators[0])
            continue
        for k, generator in enumerate(generators):
            if generator.device != like.device:  # a CPU stream driving a GPU run
                part = torch.empty(buffer[k].shape, device=generator.device, dtype=like.dtype)
                buffer[k].copy_(_fill(part, name in uniform, generator))
            else:
                _fill(buffer[k], name in uniform, generator)
        noise[name] = buffer
    return noise


def _fill(t: Tensor, uniform: bool, generator: torch.Generator) -> Tensor:
    return t.uniform_(generator=generator) if uniform else t.normal_(generator=generator)


# --------------------------------------------------------------------------- the record


@dataclass(eq=False)
class ForwardRecord:
    """The quantities one step needs, for K members, each computed on first use and cached.

    q side: the data x (K, B, D), q(z|x), z ~ q(z|x), p(x|z) at that z.
    p side: z ~ p(z) (as many as the batch), p(x|z) there, x ~ p(x|z), q(z|x) at that x.
    `noise` holds the draws of `draw_noise`: "z_q", "z_p", "x_p" as the terms read them.
    """

    model: StackedModel
    x: Tensor
    noise: Mapping[str, Tensor]
    x_gradient: XGradient = "score-function"

    @cached_property
    def posterior(self) -> DiagonalGaussian:
        return self.model.posterior(self.x)  # q(z|x): mean, logvar (K, B, Z)

    @cached_property
    def z_q(self) -> Tensor:  # (K, B, Z), reparameterised (or an implicit encoder's own draw)
        if self.model.implicit:
            return self.model.implicit_sample(self.x, self.noise["z_q"])
        return self.posterior.mean + torch.exp(0.5 * self.posterior.logvar) * self.noise["z_q"]

    @cached_property
    def likelihood_q(self) -> Bernoulli | DiagonalGaussian:  # p(x|z) at z ~ q(z|x)
        return self.model.likelihood_at(self.z_q)

    @property
    def z_p(self) -> Tensor:  # (K, B, Z) ~ p(z) = N(0, I)
        return self.noise["z_p"]

    @cached_property
    def likelihood_p(self) -> Bernoulli | DiagonalGaussian:  # p(x|z) at z ~ p(z)
        return self.model.likelihood_at(self.z_p)

    @cached_property
    def score_function(self) -> bool:
        """Whether x ~ p(x|z) is a hard draw whose gradient comes from `score_term`."""
        return self.x_gradient == "score-function" and self.model.decoder_range is None

    @cached_property
    def x_p(self) -> Tensor:
        """x ~ p(x|z_p), (K, B, D): Gaussian reparameterised; Bernoulli hard (score function)
        or straight-through binary Concrete (as `objectives.networks.Bernoulli.sample`)."""
        dist, u = self.likelihood_p, self.noise["x_p"]
        if isinstance(dist, DiagonalGaussian):
            return dist.mean + torch.exp(0.5 * dist.logvar) * u
        if self.score_function:
            return (u < torch.sigmoid(dist.logits)).to(dist.logits.dtype)
        u = u.clamp(1e-6, 1.0 - 1e-6)
        logistic = torch.log(u) - torch.log1p(-u)
        soft = torch.sigmoid((dist.logits + logistic) / RELAXED_TEMPERATURE)
        return (soft > 0.5).to(soft.dtype) + (soft - soft.detach())

    @cached_property
    def posterior_p(self) -> DiagonalGaussian:
        return self.model.posterior(self.x_p)  # q(z|x) at x ~ p(x|z), (K, B, Z)

    def score_term(self, values: Tensor, baseline: bool = True) -> Tensor:
        """The score-function surrogate (K,) for per-sample values f(x_p) (K, B); 0 when x_p
        carries its gradient itself (Gaussian, or straight-through)."""
        if not self.score_function:
            return values.new_zeros(())
        log_prob = self.likelihood_p.log_prob(self.x_p)  # (K, B), gradient to the decoder
        return score_function_surrogate(values, log_prob, baseline)

    def samples(self, variables: Variables) -> tuple[Tensor, Tensor]:
        """(q-side, p-side) samples of x, z or the pair (x, z) concatenated, each (K, B, ·)."""
        if variables == "x":
            return self.x, self.x_p
        if variables == "z":
            return self.z_q, self.z_p
        if variables == "x;z":  # AVB's adversary: the same x with z from q(z|x) or from p(z)
            return torch.cat([self.x, self.z_q], -1), torch.cat([self.x, self.z_p], -1)
        return torch.cat([self.x, self.z_q], -1), torch.cat([self.x_p, self.z_p], -1)


# --------------------------------------------------------------------------- likelihood terms


def eq_log_likelihood(r: ForwardRecord) -> Tensor:
    """E_q[log p(x|z)]: x from the data, z ~ q(z|x) reparameterised, one sample per x."""
    return r.likelihood_q.log_prob(r.x).mean(-1)


def eq_log_prior(r: ForwardRecord) -> Tensor:
    """E_q[log p(z)], analytic under the Gaussian q(z|x); sampled for an implicit encoder."""
    if r.model.implicit:
        return standard_normal_log_prob(r.z_q).mean(-1)
    return gaussian_cross_entropy_to_standard_normal(r.posterior.mean, r.posterior.logvar).mean(-1)


def eq_log_posterior(r: ForwardRecord) -> Tensor:
    """E_q[log q(z|x)] = -H(q(z|x)), analytic."""
    return -r.posterior.entropy().mean(-1)


def eq_log_joint(r: ForwardRecord) -> Tensor:
    """E_q[log p(x,z)] = E_q[log p(x|z)] + E_q[log p(z)] (Definition 8)."""
    return eq_log_likelihood(r) + eq_log_prior(r)


def ep_log_likelihood(r: ForwardRecord) -> Tensor:
    """E_p[log p(x|z)] = -E_{p(z)} H(p(x|z)), analytic in x for both decoders; z ~ p(z)."""
    return -r.likelihood_p.entropy().mean(-1)


def ep_log_prior(r: ForwardRecord) -> Tensor:
    """E_p[log p(z)] = -Z/2 (log 2π + 1): a constant of the fixed prior."""
    return r.x.new_full((len(r.x),), -0.5 * r.model.z_dim * (LOG_2PI + 1.0))


def ep_log_joint(r: ForwardRecord) -> Tensor:
    """E_p[log p(x,z)] = E_p[log p(x|z)] + E_p[log p(z)] (Definition 8)."""
    return ep_log_likelihood(r) + ep_log_prior(r)


def ep_log_posterior(r: ForwardRecord) -> Tensor:
    """E_p[log q(z|x)]: z ~ p(z), x ~ p(x|z) reparameterised, relaxed, or hard with the
    score-function gradient (VMI, Theorem 1)."""
    values = r.posterior_p.log_prob(r.z_p)  # (K, B)
    return values.mean(-1) + r.score_term(values)
