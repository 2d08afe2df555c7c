"""Networks of the Information-Autoencoding family: q(z|x), p(x|z), p(z) and discriminators.

Paper (Zhao, Song, Ermon: "The Information-Autoencoding Family"), Section 2: a generative model
p(x, z) = p(z) p(x|z) with a fixed, easy prior p(z) = N(0, I), an amortised inference model
q(z|x), and q(x, z) = p_data(x) q(z|x). Appendix C: both networks are MLPs with two hidden layers
of 1024 units (tanh for MNIST); q(z|x) is a diagonal Gaussian; p(x|z) is a Gaussian for the
one-dimensional mixture (C.1, z of size 1) and a Bernoulli for binarised MNIST (C.2, z of size 50).

Every random draw takes an optional `torch.Generator`, so a seeded run is deterministic on CPU.
Noise is drawn on the generator's device and moved to the data's, so a CPU generator also drives
a GPU run reproducibly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from objectives.config import ModelConfig

LOG_2PI = math.log(2.0 * math.pi)
RELAXED_TEMPERATURE = 0.5  # Concrete / Gumbel-sigmoid temperature (Maddison et al.; Jang et al.)
LIKELIHOODS = ("bernoulli", "gaussian")


def tanh_of_doubled_(doubled: Tensor) -> Tensor:
    """tanh(x) from 2x, in place: 2 σ(2x) - 1 (`Tanh`; `objectives.stacked._LinearTanh`)."""
    return doubled.sigmoid_().mul_(2.0).sub_(1.0)


class _SigmoidTanh(torch.autograd.Function):
    """tanh(x) = 2 σ(2x) - 1, with tanh's own backward g (1 - y²) from the saved output."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y = tanh_of_doubled_(x * 2.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """The tanh activation computed as 2 σ(2x) - 1: torch's CPU tanh kernel is several times
    slower than its sigmoid, and it dominated a population's step (docs/BENCHMARKS.md, "The
    step after issue 15's profile"); the two agree to within 2e-7 absolute in float32."""

    def forward(self, x: Tensor) -> Tensor:
        return _SigmoidTanh.apply(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


# --------------------------------------------------------------------------- noise


def standard_normal(
    shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """ε ~ N(0, I) of `shape`, on `like`'s device and dtype, drawn from `generator`."""
    device = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return noise.to(like.device)


def uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """u ~ U(0, 1) of `shape`, on `like`'s device and dtype, drawn from `generator`."""
    device = generator.device if generator is not None else like.device
    noise = torch.rand(shape, generator=generator, device=device, dtype=like.dtype)
    return noise.to(like.device)


def soft_clamp(value: Tensor, low: float, high: float) -> Tensor:
    """A smooth clamp to (low, high): the identity well inside, gradients everywhere."""
    # low + softplus(high - softplus(high - v) - low), with (high - low) folded into one
    # constant: one op fewer forward and backward (a step's small tensors cost per op)
    return low + F.softplus((high - low) - F.softplus(high - value))


# --------------------------------------------------------------------------- distributions


@dataclass(frozen=True)
class DiagonalGaussian:
    """N(mean, diag(exp(logvar))); the batch is the first axis, densities sum the rest."""

    mean: Tensor  # (B, K)
    logvar: Tensor  # (B, K)

    def log_prob(self, value: Tensor) -> Tensor:
        """log N(value; mean, σ²) summed over dimensions, (B,)."""
        squared = (value - self.mean) ** 2 * torch.exp(-self.logvar)  # (B, K)
        return -0.5 * (LOG_2PI + self.logvar + squared).sum(-1)

    def entropy(self) -> Tensor:
        """H = ½ Σ (log 2π + 1 + log σ²), (B,)."""
        return 0.5 * (LOG_2PI + 1.0 + self.logvar).sum(-1)

    def sample(self, generator: torch.Generator | None = None, *_flags: bool) -> Tensor:
        """Reparameterised draw mean + σ ε (differentiable); Bernoulli's sampling flags
        (relaxed, straight-through) mean nothing for a Gaussian and are accepted as given."""
        eps = standard_normal(tuple(self.mean.shape), self.mean, generator)  # (B, K)
        return self.mean + torch.exp(0.5 * self.logvar) * eps


@dataclass(frozen=True)
class Bernoulli:
    """Independent Bernoulli pixels with probabilities sigmoid(logits)."""

    logits: Tensor  # (B, D)

    def log_prob(self, value: Tensor) -> Tensor:
        """Σ_d [x log π + (1 - x) log(1 - π)] = Σ_d [x l - softplus(l)], (B,); x may be relaxed."""
        return (value * self.logits - F.softplus(self.logits)).sum(-1)

    def entropy(self) -> Tensor:
        """Analytic entropy Σ_d H(π_d), (B,): what E_p[log p(x|z)] needs without sampling x."""
        return bernoulli_entropy(self.logits)

    def sample(
        self,
        generator: torch.Generator | None = None,
        relaxed: bool = True,
        straight_through: bool = False,
    ) -> Tensor:
        """A draw of x, (B, D): relaxed (binary Concrete at RELAXED_TEMPERATURE, in [0, 1],
        differentiable), hard {0, 1} (no gradient), or with `straight_through` hard in value and
        relaxed in gradient (Jang et al. 2017): thresholding the relaxed draw at ½ is an exact
        Bernoulli draw, so the value is a true sample of p(x|z)."""
        if relaxed:
            soft = relaxed_bernoulli_sample(self.logits, RELAXED_TEMPERATURE, generator)
            if not straight_through:
                return soft
            hard = (soft > 0.5).to(soft.dtype)
            return hard + (soft - soft.detach())
        u = uniform(tuple(self.logits.shape), self.logits, generator)
        return (u < torch.sigmoid(self.logits)).to(self.logits.dtype)


def bernoulli_entropy(logits: Tensor) -> Tensor:
    """Σ_d H(Bernoulli(sigmoid(l_d))) = Σ_d [softplus(l) - l sigmoid(l)], (B,)."""
    return (F.softplus(logits) - logits * torch.sigmoid(logits)).sum(-1)


def relaxed_bernoulli_sample(
    logits: Tensor, temperature: float, generator: torch.Generator | None = None
) -> Tensor:
    """Binary Concrete sample sigmoid((l + log u - log(1 - u)) / τ) in (0, 1), reparameterised.

    Maddison et al. (2017), Jang et al. (2017); the paper's Section 3.1 cites both for pathwise
    gradients of discrete x. As τ -> 0 the samples approach hard Bernoulli draws.
    """
    assert temperature > 0, f"the relaxation temperature must be > 0, got {temperature}"
    u = uniform(tuple(logits.shape), logits, generator).clamp(1e-6, 1.0 - 1e-6)  # (B, D)
    logistic = torch.log(u) - torch.log1p(-u)
    return torch.sigmoid((logits + logistic) / temperature)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over dimensions, (B,): the prior p(z)."""
    return -0.5 * (LOG_2PI + z**2).sum(-1)


# --------------------------------------------------------------------------- networks


def mlp(in_dim: int, out_dim: int, hidden: int, layers: int, activation: str) -> nn.Sequential:
    """`layers` hidden layers of `hidden` units with `activation`, then a linear output."""
    assert activation in ACTIVATIONS, f"activation {activation!r} is not one of {list(ACTIVATIONS)}"
    assert layers >= 0 and hidden > 0, f"need layers >= 0 and hidden > 0, got {layers}, {hidden}"
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        width = hidden
    modules.append(nn.Linear(width, out_dim))
    return nn.Sequential(*modules)


class GaussianEncoder(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)) (paper C.1/C.2)."""

    def __init__(self, x_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.z_dim = config.z_dim
        self.net = mlp(x_dim, 2 * config.z_dim, config.hidden, config.layers, config.activation)
        self.logvar_range = (config.encoder_logvar_min, config.encoder_logvar_max)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar), each (B, Z); logvar softly bounded to `model.encoder_logvar_min/max`."""
        mu, raw = self.net(x).chunk(2, dim=-1)  # (B, Z) each
        return mu, soft_clamp(raw, *self.logvar_range)

    def forward(self, x: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian(*self.encode(x))


class ImplicitEncoder(nn.Module):
    """q(z|x) as a sampler z = f(x, ε), ε ~ N(0, I) (AVB, Mescheder et al. 2017): no density."""

    def __init__(self, x_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.z_dim, self.noise_dim = config.z_dim, config.noise_dim
        width = x_dim + config.noise_dim
        self.net = mlp(width, config.z_dim, config.hidden, config.layers, config.activation)

    def sample(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z ~ q(z|x), (B, Z), differentiable in the encoder's parameters."""
        eps = standard_normal((len(x), self.noise_dim), x, generator)  # (B, E)
        return self.net(torch.cat([x, eps], -1))


class Decoder(nn.Module):
    """p(x|z): `forward(z)` gives the distribution; density and sampling follow from it."""

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z), (B,)."""
        return self(z).log_prob(x)

    def sample(self, z: Tensor, relaxed: bool, generator: torch.Generator | None = None) -> Tensor:
        """x ~ p(x|z), (B, D): Gaussian reparameterised; Bernoulli relaxed (differentiable, in
        (0, 1)) when `relaxed`, else hard {0, 1}."""
        return self(z).sample(generator, relaxed)


class BernoulliDecoder(Decoder):
    """p(x|z): independent Bernoulli pixels with logits from an MLP (paper C.2)."""

    def __init__(self, x_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = mlp(config.z_dim, x_dim, config.hidden, config.layers, config.activation)

    def forward(self, z: Tensor) -> Bernoulli:
        return Bernoulli(self.net(z))  # logits (B, D)


class GaussianDecoder(Decoder):
    """p(x|z) = N(m(z), diag σ²(z)) with log σ² softly bounded (paper C.1; `model` keys)."""

    def __init__(self, x_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = mlp(config.z_dim, 2 * x_dim, config.hidden, config.layers, config.activation)
        self.logvar_range = (config.decoder_logvar_min, config.decoder_logvar_max)

    def forward(self, z: Tensor) -> DiagonalGaussian:
        mean, raw = self.net(z).chunk(2, dim=-1)  # (B, D) each
        return DiagonalGaussian(mean, soft_clamp(raw, *self.logvar_range))


class Discriminator(nn.Module):
    """An MLP with one logit per sample; the likelihood-free divergences train one each."""

    def __init__(self, in_dim: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = mlp(in_dim, 1, config.discriminator_hidden, config.layers, config.activation)

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v).squeeze(-1)  # (B,)


class InfoAEModel(nn.Module):
    """p(z) p(x|z) and q(z|x). Parameter groups: encoder = "q", decoder = "p"."""

    def __init__(self, x_dim: int, model: ModelConfig, likelihood: str) -> None:
        super().__init__()
        assert likelihood in LIKELIHOODS, f"likelihood {likelihood!r} is not one of {LIKELIHOODS}"
        assert x_dim > 0 and model.z_dim > 0, f"need x_dim, z_dim > 0, got {x_dim}, {model.z_dim}"
        self.config = model
        self.likelihood = likelihood
        self.x_dim = x_dim
        self.z_dim = model.z_dim
        self.implicit = model.encoder == "implicit"  # q(z|x) has no density
        encoder = ImplicitEncoder if self.implicit else GaussianEncoder
        self.encoder: GaussianEncoder | ImplicitEncoder = encoder(x_dim, model)
        decoder = BernoulliDecoder if likelihood == "bernoulli" else GaussianDecoder
        self.decoder: BernoulliDecoder | GaussianDecoder = decoder(x_dim, model)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log p(z) under N(0, I), (B,)."""
        return standard_normal_log_prob(z)

    def encoder_log_prob(self, z: Tensor, x: Tensor) -> Tensor:
        """log q(z|x), (B,)."""
        return self.encoder(x).log_prob(z)

    def sample_prior(
        self, n: int, like: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """z ~ p(z) = N(0, I), (n, Z), on `like`'s device and dtype."""
        return standard_normal((n, self.z_dim), like, generator)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"p": decoder parameters, "q": encoder parameters}."""
        return {"p": list(self.decoder.parameters()), "q": list(self.encoder.parameters())}
