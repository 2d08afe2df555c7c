"""K members of one network shape as one batched model: parameters stacked on a member axis.

The multipliers (α1, α2, λ) only weight loss terms, so K configurations of one experiment can
train as one model whose every parameter has a leading member axis (K, ...): each layer is one
batched matmul (`torch.baddbmm`), each term one (K,) vector of per-member estimates, and the
loss Σ_k Σ_t c[k, t] · term[k, t] gives member k's parameters exactly the gradient of its own
objective (the members share no parameter). Adam acts per element, so each member follows its
own trajectory (HFTA, Wang et al., MLSys 2021, fuses many small jobs the same way).

`StackedRecord` is `objectives.record.ForwardRecord` on (K, B, ·) tensors, with the noise
passed in: the caller draws it per member from that member's own generator, in the order a
plain record draws (`draw_order`), so every member sees exactly the draws of a plain
`FamilyLoss`. Supported: a Gaussian encoder q(z|x), either decoder, every likelihood term of
`objectives.record`, and the divergences of `objectives.stacked_disc`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from objectives.estimators import ESTIMATORS
from objectives.networks import (
    LOG_2PI,
    RELAXED_TEMPERATURE,
    Bernoulli,
    DiagonalGaussian,
    InfoAEModel,
    soft_clamp,
)
from objectives.record import XGradient, gaussian_cross_entropy_to_standard_normal

# The samples each variable set reads, in the order a plain `ForwardRecord.samples` draws them
# ("z_q": ε of z ~ q(z|x); "z_p": z ~ p(z); "x_p": the noise of x ~ p(x|z), after z_p)
_VARIABLE_DRAWS = {"z": ("z_q", "z_p"), "x": ("z_p", "x_p"), "x,z": ("z_q", "z_p", "x_p")}
LIKELIHOOD_DRAWS: dict[str, tuple[str, ...]] = {
    "E_q[log p(x|z)]": ("z_q",),
    "E_q[log p(z)]": (),
    "E_q[log q(z|x)]": (),
    "E_q[log p(x,z)]": ("z_q",),
    "E_p[log p(x|z)]": ("z_p",),
    "E_p[log p(x,z)]": ("z_p",),
    "E_p[log p(z)]": (),
    "E_p[log q(z|x)]": ("z_p", "x_p"),
}
# Terms the population computes, and the samples each reads
STACKED_TERMS: dict[str, tuple[str, ...]] = LIKELIHOOD_DRAWS | {
    name: _VARIABLE_DRAWS[e.variables]
    for name, e in ESTIMATORS.items()
    if e.divergence is not None and e.variables in _VARIABLE_DRAWS
}


def draw_order(terms: Sequence[str], x_gradient: XGradient = "score-function") -> list[str]:
    """The order in which a plain `ForwardRecord` first draws the samples of `terms` (taken in
    the order given, as `FamilyLoss` does): each is drawn on first use. For a divergence on x
    or (x, z), `FamilyLoss.step` first asks `record.score_function`, which (for x_gradient
    score-function) builds p(x|z) at z ~ p(z): z_p comes first there."""
    order: list[str] = []
    for term in terms:
        draws = STACKED_TERMS[term]
        estimator = ESTIMATORS[term]
        if x_gradient == "score-function" and estimator.variables in ("x", "x,z"):
            draws = ("z_p", *draws)
        for sample in draws:
            if sample not in order:
                order.append(sample)
    return order


class StackedLinear(nn.Module):
    """K linear layers y_k = x_k W_kᵀ + b_k as one batched matmul; x (K, B, in) -> (K, B, out).

    The weights are kept transposed, (K, in, out): the gradient of a batched matmul then comes
    out in the parameter's own layout (a (K, out, in) weight would make autograd copy every
    gradient, the bulk of a step at 2x1024)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        weights = [layer.weight.detach().t() for layer in layers]  # (in, out) each
        self.weight_t = nn.Parameter(torch.stack(weights).contiguous())  # (K, in, out)
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        """With `frozen` the gradient reaches x but not the layer (a discriminator's logits
        on the model's side, as `AdversarialDivergence.frozen_logits`)."""
        weight, bias = self.weight_t, self.bias
        if frozen:
            weight, bias = weight.detach(), bias.detach()
        return torch.baddbmm(bias.unsqueeze(1), x, weight)


class StackedMLP(nn.Module):
    """K copies of one `objectives.networks.mlp` shape; activations are shared modules."""

    def __init__(self, nets: Sequence[nn.Sequential]) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for position, module in enumerate(nets[0]):
            if isinstance(module, nn.Linear):
                modules.append(StackedLinear([net[position] for net in nets]))
            else:
                modules.append(module)
        self.net = nn.Sequential(*modules)

    def forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        for module in self.net:
            x = module(x, frozen) if isinstance(module, StackedLinear) else module(x)
        return x

    def copy_member_into(self, k: int, net: nn.Sequential) -> None:
        """Write member k's parameters into a plain `mlp` of the same shape."""
        with torch.no_grad():
            for stacked, plain in zip(self.net, net, strict=True):
                if isinstance(stacked, StackedLinear):
                    plain.weight.copy_(stacked.weight_t[k].t())
                    plain.bias.copy_(stacked.bias[k])


class StackedModel(nn.Module):
    """K `InfoAEModel`s of one shape (Gaussian encoder) as one model on (K, B, ·) tensors."""

    def __init__(self, models: Sequence[InfoAEModel]) -> None:
        super().__init__()
        first = models[0]
        assert not first.implicit, "the population supports the Gaussian encoder only"
        self.likelihood, self.x_dim, self.z_dim = first.likelihood, first.x_dim, first.z_dim
        self.encoder_range = first.encoder.logvar_range
        self.decoder_range = getattr(first.decoder, "logvar_range", None)
        self.encoder = StackedMLP([m.encoder.net for m in models])
        self.decoder = StackedMLP([m.decoder.net for m in models])

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(z|x) per member, mean and logvar (K, B, Z), as `GaussianEncoder.encode`."""
        mu, raw = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mu, soft_clamp(raw, *self.encoder_range))

    def likelihood_at(self, z: Tensor) -> Bernoulli | DiagonalGaussian:
        """p(x|z) per member at z (K, B, Z), as the plain decoders."""
        out = self.decoder(z)
        if self.decoder_range is None:
            return Bernoulli(out)
        mean, raw = out.chunk(2, dim=-1)
        return DiagonalGaussian(mean, soft_clamp(raw, *self.decoder_range))

    def copy_member_into(self, k: int, model: InfoAEModel) -> None:
        """Member k's parameters into a plain model (for the plain evaluation code)."""
        self.encoder.copy_member_into(k, model.encoder.net)
        self.decoder.copy_member_into(k, model.decoder.net)


@dataclass(eq=False)
class StackedRecord:
    """`ForwardRecord` for K members: x (K, B, D) and the noise of each sample, (K, B, ·):
    noise["z_q"], noise["z_p"] ~ N(0, I) (B, Z); noise["x_p"] (B, D) ~ N(0, I) for a Gaussian
    decoder, ~ U(0, 1) for a Bernoulli one (the draws `DiagonalGaussian.sample` and
    `Bernoulli.sample` make)."""

    model: StackedModel
    x: Tensor
    noise: Mapping[str, Tensor]
    x_gradient: XGradient = "score-function"

    @cached_property
    def posterior(self) -> DiagonalGaussian:
        return self.model.posterior(self.x)

    @cached_property
    def z_q(self) -> Tensor:  # reparameterised, as `DiagonalGaussian.sample`
        return self.posterior.mean + torch.exp(0.5 * self.posterior.logvar) * self.noise["z_q"]

    @cached_property
    def likelihood_q(self) -> Bernoulli | DiagonalGaussian:
        return self.model.likelihood_at(self.z_q)

    @property
    def z_p(self) -> Tensor:
        return self.noise["z_p"]

    @cached_property
    def likelihood_p(self) -> Bernoulli | DiagonalGaussian:
        return self.model.likelihood_at(self.z_p)

    @cached_property
    def score_function(self) -> bool:
        return self.x_gradient == "score-function" and self.model.decoder_range is None

    @cached_property
    def x_p(self) -> Tensor:
        """x ~ p(x|z_p), as `ForwardRecord.x_p`: Gaussian reparameterised; Bernoulli hard (score
        function) or straight-through binary Concrete (`objectives.networks`)."""
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
        return self.model.posterior(self.x_p)

    def score_term(self, values: Tensor, baseline: bool = True) -> Tensor | None:
        """`score_function_surrogate` per member, (K,), for values (K, B); None when x_p
        carries its gradient itself (the plain record adds a zero)."""
        if not self.score_function:
            return None
        log_prob = self.likelihood_p.log_prob(self.x_p)  # (K, B)
        f = values.detach()
        if baseline and f.shape[-1] > 1:
            f = f - (f.sum(-1, keepdim=True) - f) / (f.shape[-1] - 1)
        term = (f * log_prob).mean(-1)
        return term - term.detach()

    def samples(self, variables: str) -> tuple[Tensor, Tensor]:
        if variables == "x":
            return self.x, self.x_p
        if variables == "z":
            return self.z_q, self.z_p
        return torch.cat([self.x, self.z_q], -1), torch.cat([self.x_p, self.z_p], -1)


def _eq_log_likelihood(r: StackedRecord) -> Tensor:
    return r.likelihood_q.log_prob(r.x).mean(-1)


def _eq_log_prior(r: StackedRecord) -> Tensor:
    mean, logvar = r.posterior.mean, r.posterior.logvar
    return gaussian_cross_entropy_to_standard_normal(mean, logvar).mean(-1)


def _ep_log_likelihood(r: StackedRecord) -> Tensor:
    return -r.likelihood_p.entropy().mean(-1)


def _ep_log_prior(r: StackedRecord) -> Tensor:
    """-Z/2 (log 2π + 1), a constant (as `objectives.record.ep_log_prior`)."""
    return r.x.new_tensor(-0.5 * r.model.z_dim * (LOG_2PI + 1.0))


def _ep_log_posterior(r: StackedRecord) -> Tensor:
    values = r.posterior_p.log_prob(r.z_p)  # (K, B)
    score = r.score_term(values)
    return values.mean(-1) if score is None else values.mean(-1) + score


# The estimators of `objectives.record`, each (K,): the same expressions on (K, B, ·) tensors
LIKELIHOODS: dict[str, Callable[[StackedRecord], Tensor]] = {
    "E_q[log p(x|z)]": _eq_log_likelihood,
    "E_q[log p(z)]": _eq_log_prior,
    "E_q[log q(z|x)]": lambda r: -r.posterior.entropy().mean(-1),
    "E_q[log p(x,z)]": lambda r: _eq_log_likelihood(r) + _eq_log_prior(r),
    "E_p[log p(x|z)]": _ep_log_likelihood,
    "E_p[log p(x,z)]": lambda r: _ep_log_likelihood(r) + _ep_log_prior(r),
    "E_p[log p(z)]": lambda r: _ep_log_prior(r).expand(len(r.x)),
    "E_p[log q(z|x)]": _ep_log_posterior,
}
