"""One step's shared forward pass (`ForwardRecord`) and the likelihood terms of the family.

The likelihood-based toolbox T1 (paper Definition 7): each term is a small pure function of a
`ForwardRecord`, whose quantities (q(z|x), z ~ q(z|x), z ~ p(z), x ~ p(x|z), ...) are computed
lazily, only when some term reads them. `objectives.estimators` registers them.

Estimator choices (Section 3.1: pathwise gradients, Kingma & Welling 2013):
- E_q terms use z ~ q(z|x) reparameterised. Under the Gaussian encoder E_q[log q(z|x)] (the
  negative entropy) and E_q[log p(z)] are analytic: the same expectation and expected gradient
  as the Monte Carlo estimate, with no variance.
- E_p terms need x ~ p(x|z) to carry gradient. E_p[log p(x|z)] is the analytic negative entropy
  of p(x|z) (Bernoulli or Gaussian). Where x feeds q(z|x), a discriminator or a kernel, a
  Gaussian x is reparameterised. A Bernoulli x is by default (`x_gradient="score-function"`,
  Section 3.1: the likelihood-ratio gradient, Williams 1992) a hard draw without pathwise
  gradient, and every term that reads it adds a zero-valued surrogate whose gradient is
  E_p[(f(x) - b) ∇ log p(x|z)], b the leave-one-out mean of f: unbiased, at the cost of
  variance. The option `x_gradient="straight-through"` relaxes it instead: binary Concrete at
  temperature 0.5 (Maddison et al. 2017; Jang et al. 2017), the value the hard draw (the
  relaxed draw thresholded at ½, an exact Bernoulli sample) and the gradient the relaxed one,
  biased by 14-24 % on the 3-pixel check of tests/test_score_function.py;
  `straight_through=False` then feeds the relaxed values themselves. Either way generated x,
  like binarised data, lies in {0, 1}: a discriminator cannot tell them apart by non-binary
  values, and every reported estimate is of the true term.
  E_p[log p(z)] = -Z/2 (log 2π + 1) is a constant (Definition 8 drops it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import Tensor

from objectives.networks import (
    LOG_2PI,
    Bernoulli,
    DiagonalGaussian,
    InfoAEModel,
    standard_normal_log_prob,
)

Variables = Literal["x", "z", "x,z", "x;z"]  # x;z: (x, z ~ q(z|x)) against (x, z ~ p(z))
XGradient = Literal["straight-through", "score-function"]


# --------------------------------------------------------------------------- closed forms


def gaussian_kl(
    mu: Tensor, logvar: Tensor, prior_mu: Tensor | None = None, prior_logvar: Tensor | None = None
) -> Tensor:
    """KL(N(mu, σ²) || N(prior_mu, prior_σ²)) summed over dimensions, (B,); prior default N(0, I).

    With the standard-normal prior this is the rate E_q KL(q(z|x)||p(z)) of Eq. (1) per x.
    """
    prior_mu = torch.zeros_like(mu) if prior_mu is None else prior_mu
    prior_logvar = torch.zeros_like(logvar) if prior_logvar is None else prior_logvar
    ratio = torch.exp(logvar - prior_logvar)  # σ² / prior σ²
    squared = (mu - prior_mu) ** 2 * torch.exp(-prior_logvar)
    return 0.5 * (ratio + squared - 1.0 - (logvar - prior_logvar)).sum(-1)


def gaussian_cross_entropy_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """E_{N(mu, σ²)}[log N(z; 0, I)] = -½ Σ (log 2π + mu² + σ²), (B,)."""
    return -0.5 * (LOG_2PI + mu**2 + torch.exp(logvar)).sum(-1)


def score_function_surrogate(values: Tensor, log_prob: Tensor, baseline: bool = True) -> Tensor:
    """Zero in value; its gradient is the likelihood-ratio estimate of ∇ E_{x~p}[f(x)].

    values: f(x_i) per sample (B,), taken as constants; log_prob: log p(x_i|z_i) (B,), carrying
    the gradient. With `baseline`, each f(x_i) is centred by the mean of the others (a baseline
    independent of x_i keeps the estimate unbiased); only valid when f(x_i) does not depend on
    the other samples.
    """
    f = values.detach()
    if baseline and len(f) > 1:
        f = f - (f.sum() - f) / (len(f) - 1)
    term = (f * log_prob).mean()
    return term - term.detach()


# --------------------------------------------------------------------------- the record


@dataclass(eq=False)
class ForwardRecord:
    """The quantities one step needs, each computed on first use and cached.

    q side: the data batch x, q(z|x), z ~ q(z|x), p(x|z) at that z.
    p side: z ~ p(z) (as many as the batch), p(x|z) there, x ~ p(x|z) (relaxed if Bernoulli),
    and q(z|x) at that x.
    """

    model: InfoAEModel
    x: Tensor  # (B, D) data batch
    generator: torch.Generator | None = None
    straight_through: bool = True  # Bernoulli x ~ p(x|z): hard value, relaxed gradient
    x_gradient: XGradient = "score-function"  # how a Bernoulli x ~ p(x|z) carries gradient

    @cached_property
    def posterior(self) -> DiagonalGaussian:
        assert not self.model.implicit, "an implicit encoder has no density q(z|x)"
        return self.model.encoder(self.x)  # q(z|x): mean, logvar (B, Z)

    @cached_property
    def z_q(self) -> Tensor:  # (B, Z), reparameterised (or an implicit encoder's own draw)
        if self.model.implicit:
            return self.model.encoder.sample(self.x, self.generator)
        return self.posterior.sample(self.generator)

    @cached_property
    def likelihood_q(self) -> Bernoulli | DiagonalGaussian:  # p(x|z) at z ~ q(z|x), (B, D)
        return self.model.decoder(self.z_q)

    @cached_property
    def z_p(self) -> Tensor:
        return self.model.sample_prior(len(self.x), self.x, self.generator)  # (B, Z)

    @cached_property
    def likelihood_p(self) -> Bernoulli | DiagonalGaussian:  # p(x|z) at z ~ p(z), (B, D)
        return self.model.decoder(self.z_p)

    @cached_property
    def score_function(self) -> bool:
        """Whether x ~ p(x|z) is a hard draw whose gradient comes from `score_term`."""
        return self.x_gradient == "score-function" and isinstance(self.likelihood_p, Bernoulli)

    @cached_property
    def x_p(self) -> Tensor:  # (B, D): reparameterised, Bernoulli straight-through, or hard
        if self.score_function:
            return self.likelihood_p.sample(self.generator, False)  # {0, 1}, no gradient
        return self.likelihood_p.sample(self.generator, True, self.straight_through)

    def score_term(self, values: Tensor, baseline: bool = True) -> Tensor:
        """The score-function surrogate for per-sample values f(x_p) (B,); 0 when x_p carries
        its gradient itself (Gaussian, or straight-through)."""
        if not self.score_function:
            return values.new_zeros(())
        log_prob = self.likelihood_p.log_prob(self.x_p)  # (B,), gradient to the decoder
        return score_function_surrogate(values, log_prob, baseline)

    @cached_property
    def posterior_p(self) -> DiagonalGaussian:
        return self.model.encoder(self.x_p)  # q(z|x) at x ~ p(x|z), (B, Z)

    def samples(self, variables: Variables) -> tuple[Tensor, Tensor]:
        """(q-side, p-side) samples of x, z or the pair (x, z) concatenated, each (B, ·)."""
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
    return r.likelihood_q.log_prob(r.x).mean()


def eq_log_prior(r: ForwardRecord) -> Tensor:
    """E_q[log p(z)], analytic under the Gaussian q(z|x); sampled for an implicit encoder."""
    if r.model.implicit:
        return standard_normal_log_prob(r.z_q).mean()
    return gaussian_cross_entropy_to_standard_normal(r.posterior.mean, r.posterior.logvar).mean()


def eq_log_posterior(r: ForwardRecord) -> Tensor:
    """E_q[log q(z|x)] = -H(q(z|x)), analytic."""
    return -r.posterior.entropy().mean()


def eq_log_joint(r: ForwardRecord) -> Tensor:
    """E_q[log p(x,z)] = E_q[log p(x|z)] + E_q[log p(z)] (Definition 8)."""
    return eq_log_likelihood(r) + eq_log_prior(r)


def ep_log_likelihood(r: ForwardRecord) -> Tensor:
    """E_p[log p(x|z)] = -E_{p(z)} H(p(x|z)), analytic in x for both decoders; z ~ p(z)."""
    return -r.likelihood_p.entropy().mean()


def ep_log_prior(r: ForwardRecord) -> Tensor:
    """E_p[log p(z)] = -Z/2 (log 2π + 1): a constant of the fixed prior."""
    return r.x.new_tensor(-0.5 * r.model.z_dim * (LOG_2PI + 1.0))


def ep_log_joint(r: ForwardRecord) -> Tensor:
    """E_p[log p(x,z)] = E_p[log p(x|z)] + E_p[log p(z)] (Definition 8)."""
    return ep_log_likelihood(r) + ep_log_prior(r)


def ep_log_posterior(r: ForwardRecord) -> Tensor:
    """E_p[log q(z|x)]: z ~ p(z), x ~ p(x|z) reparameterised, relaxed, or hard with the
    score-function gradient (VMI, Theorem 1)."""
    values = r.posterior_p.log_prob(r.z_p)  # (B,)
    return values.mean() + r.score_term(values)
