"""The networks of K members as one model: every parameter has a leading member axis (K, ...).

The multipliers (α1, α2, λ) only weight loss terms, so K configurations of one experiment train
as one model: each layer is one batched matmul (`torch.baddbmm`) and the loss Σ_k Σ_t c[k, t] ·
term[k, t] gives member k's parameters exactly the gradient of its own objective, since the
members share no parameter. Adam acts per element, so each member follows its own trajectory
(HFTA, Wang et al., MLSys 2021, fuses many small jobs the same way). A plain run is K = 1.

Each member is first built as a plain `objectives.networks` module, initialised under its own
seed; the stacked model copies those weights in, and copies a member back out for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from objectives.networks import (
    Bernoulli,
    DiagonalGaussian,
    InfoAEModel,
    Tanh,
    soft_clamp,
    tanh_of_doubled_,
)

NARROW = 8  # outputs below which a layer computes its transpose (StackedLinear's docstring)


class StackedLinear(nn.Module):
    """K linear layers y_k = x_k W_kᵀ + b_k as one batched matmul; x (K, B, in) -> (K, B, out).

    Each parameter is laid out as the batched matmul reads it, so its gradient comes out in the
    parameter's own layout (else autograd copies every gradient, which dominates a step of a
    wide network) and the bias needs no reshaping per step:
    - a layer with NARROW outputs or more keeps `weight_t` (K, in, out) and `bias` (K, 1, out)
      and computes x W_t + b;
    - a narrower one (an output layer of a few units: the mixture's 2, a discriminator's 1)
      keeps `weight` (K, out, in) and `bias` (K, out, 1) and computes (W xᵀ + b)ᵀ, because
      MKL's batched matmul is several times slower with a handful of output columns than with
      a handful of rows (docs/BENCHMARKS.md, "The step after issue 15's profile")."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.narrow = layers[0].out_features < NARROW
        with torch.no_grad():
            if self.narrow:
                self.weight = nn.Parameter(torch.stack([layer.weight for layer in layers]))
                self.bias = nn.Parameter(torch.stack([layer.bias[:, None] for layer in layers]))
            else:
                weights = [layer.weight.t() for layer in layers]  # (in, out) each
                self.weight_t = nn.Parameter(torch.stack(weights).contiguous())
                self.bias = nn.Parameter(torch.stack([layer.bias[None] for layer in layers]))

    def forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        """With `frozen` the gradient reaches x but not the layer (a discriminator's logits on
        the model's side)."""
        weight = self.weight if self.narrow else self.weight_t
        bias = self.bias
        if frozen:
            weight, bias = weight.detach(), bias.detach()
        if self.narrow:
            return torch.baddbmm(bias, weight, x.transpose(1, 2)).transpose(1, 2)
        return torch.baddbmm(bias, x, weight)

    def tanh(self, x: Tensor, frozen: bool = False) -> Tensor:
        """tanh(x W_t + b) as one op (`_LinearTanh`), for a wide layer outside autocast."""
        assert not self.narrow, "a narrow layer is an output layer: no activation follows"
        weight, bias = self.weight_t, self.bias
        if frozen:
            weight, bias = weight.detach(), bias.detach()
        return _LinearTanh.apply(x, weight, bias)

    def member_weight(self, k: int) -> Tensor:
        """Member k's weight in nn.Linear's layout (out, in), a view."""
        return self.weight[k] if self.narrow else self.weight_t[k].t()

    def member_bias(self, k: int) -> Tensor:
        """Member k's bias (out,), a view."""
        return self.bias[k].view(-1)


class _LinearTanh(torch.autograd.Function):
    """tanh(x W + b) = 2 σ(2 (x W + b)) - 1 for x (K, B, in), W (K, in, out), b (K, 1, out).

    The same arithmetic as a StackedLinear followed by `objectives.networks.Tanh`, bit for bit
    (scaling by 2 is exact, so the product's own 2α and 2β give 2 (x W + b) as it rounds), in
    fewer passes over the (K, B, out) activations: the doubling rides in the matmul and the
    rest runs in place, where the two modules wrote three fresh tensors. A population's
    activations outgrow the L2 cache, so passes over them are what its step pays for
    (docs/BENCHMARKS.md, "The population step"). The backward is the two modules' own:
    tanh's g (1 - y²), then the product's."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        y = tanh_of_doubled_(torch.baddbmm(bias, x, weight, beta=2.0, alpha=2.0))
        ctx.save_for_backward(x, weight, y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, y = ctx.saved_tensors
        g = torch.ops.aten.tanh_backward(grad, y)
        needs = ctx.needs_input_grad
        grad_x = torch.bmm(g, weight.transpose(1, 2)) if needs[0] else None
        grad_w = torch.bmm(x.transpose(1, 2), g) if needs[1] else None
        grad_b = g.sum(1, keepdim=True) if needs[2] else None
        return grad_x, grad_w, grad_b


class StackedMLP(nn.Module):
    """K copies of one `objectives.networks.mlp` shape; activations are shared modules. A wide
    layer followed by tanh runs as one op (`StackedLinear.tanh`) outside autocast."""

    def __init__(self, nets: Sequence[nn.Sequential]) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for position, module in enumerate(nets[0]):
            if isinstance(module, nn.Linear):
                modules.append(StackedLinear([net[position] for net in nets]))
            else:
                modules.append(module)
        self.net = nn.Sequential(*modules)
        # positions whose layer runs fused with the tanh after it (that tanh is then skipped)
        self.fused = {
            i
            for i, (layer, after) in enumerate(zip(modules, modules[1:], strict=False))
            if isinstance(layer, StackedLinear) and not layer.narrow and isinstance(after, Tanh)
        }

    def forward(self, x: Tensor, frozen: bool = False) -> Tensor:
        fuse = bool(self.fused) and not torch.is_autocast_enabled(x.device.type)
        skip = False
        for i, module in enumerate(self.net):
            if skip:
                skip = False
            elif fuse and i in self.fused:
                x, skip = module.tanh(x, frozen), True
            elif isinstance(module, StackedLinear):
                x = module(x, frozen)
            else:
                x = module(x)
        return x

    def copy_member_from(self, k: int, net: nn.Sequential) -> None:
        """Member k's parameters from a plain `mlp` of the same shape (a new member)."""
        with torch.no_grad():
            for stacked, plain in zip(self.net, net, strict=True):
                if isinstance(stacked, StackedLinear):
                    stacked.member_weight(k).copy_(plain.weight)
                    stacked.member_bias(k).copy_(plain.bias)

    def copy_member_into(self, k: int, net: nn.Sequential) -> None:
        """Write member k's parameters into a plain `mlp` of the same shape."""
        with torch.no_grad():
            for stacked, plain in zip(self.net, net, strict=True):
                if isinstance(stacked, StackedLinear):
                    plain.weight.copy_(stacked.member_weight(k))
                    plain.bias.copy_(stacked.member_bias(k))


class StackedModel(nn.Module):
    """K `InfoAEModel`s of one shape as one model on (K, B, ·) tensors: q(z|x) (a Gaussian, or
    AVB's implicit z = f(x, ε)) and p(x|z) (Bernoulli or Gaussian). Parameter groups as the
    plain model's: encoder "q", decoder "p"."""

    def __init__(self, models: Sequence[InfoAEModel]) -> None:
        super().__init__()
        first = models[0]
        shapes = {(m.x_dim, m.z_dim, m.likelihood, m.implicit, m.config) for m in models}
        assert len(shapes) == 1, "stacked members must share one network shape"
        self.likelihood, self.x_dim, self.z_dim = first.likelihood, first.x_dim, first.z_dim
        self.implicit = first.implicit
        self.noise_dim = first.config.noise_dim  # of ε, for an implicit encoder
        self.encoder_range = getattr(first.encoder, "logvar_range", None)
        self.decoder_range = getattr(first.decoder, "logvar_range", None)
        self.encoder = StackedMLP([m.encoder.net for m in models])
        self.decoder = StackedMLP([m.decoder.net for m in models])

    def __len__(self) -> int:
        return len(self.encoder.net[0].bias)  # the member axis

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(z|x) per member, mean and logvar (K, B, Z), as `GaussianEncoder.encode`."""
        assert not self.implicit, "an implicit encoder has no density q(z|x)"
        mu, raw = self.encoder(x).chunk(2, dim=-1)
        return DiagonalGaussian(mu, soft_clamp(raw, *self.encoder_range))

    def implicit_sample(self, x: Tensor, eps: Tensor) -> Tensor:
        """z = f(x, ε) per member, (K, B, Z), as `ImplicitEncoder.sample` with ε given."""
        return self.encoder(torch.cat([x, eps], -1))

    def likelihood_at(self, z: Tensor) -> Bernoulli | DiagonalGaussian:
        """p(x|z) per member at z (K, B, Z), as the plain decoders."""
        out = self.decoder(z)
        if self.decoder_range is None:
            return Bernoulli(out)
        mean, raw = out.chunk(2, dim=-1)
        return DiagonalGaussian(mean, soft_clamp(raw, *self.decoder_range))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"p": decoder parameters, "q": encoder parameters}, as `InfoAEModel`'s."""
        return {"p": list(self.decoder.parameters()), "q": list(self.encoder.parameters())}

    def copy_member_from(self, k: int, model: InfoAEModel) -> None:
        """Member k's parameters from a plain model (a refilled slot's new member)."""
        self.encoder.copy_member_from(k, model.encoder.net)
        self.decoder.copy_member_from(k, model.decoder.net)

    def copy_member_into(self, k: int, model: InfoAEModel) -> None:
        """Member k's parameters into a plain model (what evaluation reads)."""
        self.encoder.copy_member_into(k, model.encoder.net)
        self.decoder.copy_member_into(k, model.decoder.net)
