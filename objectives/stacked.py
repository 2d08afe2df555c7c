"""K members of one network shape as one batched model: parameters stacked on a member axis.

The multipliers (α1, α2, λ) only weight loss terms, so K configurations of one experiment can
train as one model whose every parameter has a leading member axis (K, ...): each layer is one
batched matmul (`torch.baddbmm`), each term one (K,) vector of per-member estimates, and the
loss Σ_k Σ_t c[k, t] · term[k, t] gives member k's parameters exactly the gradient of its own
objective (the members share no parameter). Adam acts per element, so each member follows its
own trajectory (HFTA, Wang et al., MLSys 2021, fuses many small jobs the same way).

Supported so far: a Gaussian encoder q(z|x), either decoder, and the likelihood terms of
`objectives.record` that need no x ~ p(x|z), plus MMD on z (Section 3.4). Noise comes in from
the caller, drawn per member from that member's own generator, so every member sees exactly
the draws a plain `FamilyLoss` would make.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from objectives.divergences import mmd_unbiased
from objectives.networks import (
    LOG_2PI,
    Bernoulli,
    DiagonalGaussian,
    InfoAEModel,
    soft_clamp,
)
from objectives.record import gaussian_cross_entropy_to_standard_normal

# Terms the population computes, and the samples each reads ("z_q": z ~ q(z|x), "z_p": z ~ p(z))
STACKED_TERMS: dict[str, tuple[str, ...]] = {
    "E_q[log p(x|z)]": ("z_q",),
    "E_q[log p(z)]": (),
    "E_q[log q(z|x)]": (),
    "E_q[log p(x,z)]": ("z_q",),
    "E_p[log p(x|z)]": ("z_p",),
    "E_p[log p(x,z)]": ("z_p",),
    "E_p[log p(z)]": (),
    "MMD(q(z)||p(z))": ("z_q", "z_p"),
}


def draw_order(terms: Sequence[str]) -> list[str]:
    """The order in which a plain `ForwardRecord` first draws z ~ q(z|x) and z ~ p(z) for
    `terms` (taken in the order given, as `FamilyLoss` does): each is drawn on first use."""
    order: list[str] = []
    for term in terms:
        for sample in STACKED_TERMS[term]:
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

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight_t)


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

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

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
        self.likelihood, self.z_dim = first.likelihood, first.z_dim
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


def stacked_terms(
    model: StackedModel,
    x: Tensor,
    noise: Mapping[str, Tensor],
    terms: Sequence[str],
    kernel: tuple[str, float],
) -> dict[str, Tensor]:
    """Each term's per-member estimate (K,), with the estimators of `objectives.record`:
    analytic E_q[log p(z)], E_q[log q(z|x)] and E_p[log p(x|z)]; one reparameterised
    z = μ + σ ε per x (ε = noise["z_q"]); z ~ p(z) = noise["z_p"]; MMD² by the U-statistic
    (Gretton 2012) per member with `kernel` = (name, scale). x (K, B, D); noise (K, B, Z)."""
    posterior = model.posterior(x)
    z_q = None
    if "z_q" in noise:  # reparameterised, as `DiagonalGaussian.sample`
        z_q = posterior.mean + torch.exp(0.5 * posterior.logvar) * noise["z_q"]  # (K, B, Z)
    out: dict[str, Tensor] = {}
    for term in terms:
        if term in ("E_q[log p(x|z)]", "E_q[log p(x,z)]"):
            value = model.likelihood_at(z_q).log_prob(x).mean(-1)
            if term == "E_q[log p(x,z)]":
                value = value + _eq_log_prior(posterior)
        elif term == "E_q[log p(z)]":
            value = _eq_log_prior(posterior)
        elif term == "E_q[log q(z|x)]":
            value = -posterior.entropy().mean(-1)
        elif term in ("E_p[log p(x|z)]", "E_p[log p(x,z)]"):
            value = -model.likelihood_at(noise["z_p"]).entropy().mean(-1)
            if term == "E_p[log p(x,z)]":
                value = value + _ep_log_prior(model, x)
        elif term == "E_p[log p(z)]":
            value = _ep_log_prior(model, x).expand(len(x))
        else:  # MMD(q(z)||p(z))
            mmd = functools.partial(mmd_unbiased, kernel=kernel[0], scale=kernel[1])
            value = torch.vmap(mmd)(z_q, noise["z_p"])
        out[term] = value
    return out


def _eq_log_prior(posterior: DiagonalGaussian) -> Tensor:
    """E_q[log p(z)] per member, (K,): analytic under the Gaussian q(z|x)."""
    mean, logvar = posterior.mean, posterior.logvar
    return gaussian_cross_entropy_to_standard_normal(mean, logvar).mean(-1)


def _ep_log_prior(model: StackedModel, x: Tensor) -> Tensor:
    """E_p[log p(z)] = -Z/2 (log 2π + 1), a constant (as `objectives.record.ep_log_prior`)."""
    return x.new_tensor(-0.5 * model.z_dim * (LOG_2PI + 1.0))
