"""The config types of an objective and of a model: what the family layer needs to build a loss.

They are the `objective:` and `model:` sections of an experiment file (docs/EXPERIMENT_FILE.md);
`experiment.config` reads the file into them. Frozen dataclasses: one field per key, with
its default and a one-line meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


class ConfigError(ValueError):
    """A malformed experiment file, override or config value; the message names the key."""


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 1024  # units per hidden layer (paper C.1/C.2: 1024)
    layers: int = 2  # hidden layers in encoder, decoder and discriminators
    z_dim: int = 1  # latent size (paper: 1 for mog, 50 for MNIST)
    activation: Literal["tanh", "relu", "softplus", "elu"] = "tanh"
    likelihood: Literal["bernoulli", "gaussian"] | None = None  # None: the dataset's own
    discriminator_hidden: int = 256  # units per hidden layer of each discriminator
    # q(z|x): "gaussian" (a density), or "implicit" z = f(x, ε) with ε ~ N(0, I) of `noise_dim`
    # (AVB, Mescheder et al. 2017): no density, so KL(q(z|x)||p(z)) is learnt by an adversary
    encoder: Literal["gaussian", "implicit"] = "gaussian"
    noise_dim: int = 4  # size of ε fed to an implicit encoder
    # Soft bounds on log σ² (objectives.networks.soft_clamp). A floor caps what a term can
    # reach: q(z|x)'s caps I_q near Z·(-1 - floor)/2 nats, p(x|z)'s caps -distortion at
    # D·(-1 - log 2π - floor)/2 (-3.58 nats on mog at -10). Evaluations count the units
    # sitting at a floor (`floor_units`). The defaults keep every run finite in fp32.
    encoder_logvar_min: float = -16.0  # floor of log σ² of q(z|x): I_q <= ~7.5 nats per unit
    encoder_logvar_max: float = 8.0  # ceiling of log σ² of q(z|x)
    decoder_logvar_min: float = -10.0  # floor of log σ² of a Gaussian p(x|z): σ >= 0.0067
    decoder_logvar_max: float = 5.0  # ceiling of log σ² of a Gaussian p(x|z)

    def __post_init__(self) -> None:
        for side in ("encoder", "decoder"):
            low, high = getattr(self, f"{side}_logvar_min"), getattr(self, f"{side}_logvar_max")
            if not low < high:
                raise ConfigError(
                    f"model.{side}_logvar_min: must be below model.{side}_logvar_max, "
                    f"got {low} and {high}"
                )


@dataclass(frozen=True)
class DualConfig:
    """Dual ascent on chosen multipliers (the paper: λ should be maximised, Section 4.1)."""

    slack: Mapping[str, float] = field(default_factory=dict)  # term -> ε: constraint D <= ε
    lr: float = 1e-3  # step size of projected gradient ascent on λ
    lambda_min: float = 1e-3  # λ is clipped to [lambda_min, lambda_max]
    lambda_max: float = 1e4


@dataclass(frozen=True)
class ObjectiveConfig:
    preset: str | None = None  # a name from objectives.presets.PRESETS
    params: Mapping[str, float] = field(default_factory=dict)  # the preset's parameters
    alpha1: float = 0.0  # coefficient of I_p(x;z) (Lagrangian form, no preset)
    alpha2: float = 0.0  # coefficient of I_q(x;z)
    lambdas: Mapping[str, float] = field(default_factory=dict)  # term -> multiplier
    # MMD (objectives.mmd, objectives.kernels): the kernel, its bandwidth c (a rule or a
    # number) and the estimator. The defaults: docs/OBJECTIVES.md ("MMD: kernel, bandwidth,
    # estimator"); the paper files use Zhao et al.'s code's rbf, dim-squared, biased
    kernel: Literal["imq", "rbf"] = "imq"  # imq c/(c + D) or rbf (Gaussian) exp(-D/c)
    kernel_bandwidth: Literal["dim-squared", "twice-dim", "median"] | float = "twice-dim"
    kernel_estimator: Literal["unbiased", "biased"] = "unbiased"  # U- or V-statistic
    # JS on the model side (Section 3.4): minimax descends λ·JS itself (at the optimal
    # discriminator its gradient is λ ∇JS); non-saturating is the GAN heuristic (another game)
    js_gradient: Literal["minimax", "non-saturating"] = "minimax"
    # How a Bernoulli x ~ p(x|z) carries gradient into E_p terms and divergences on x or (x, z):
    # score-function (Section 3.1, unbiased; InfoGAN on digits: nll 834-844 against 1207-1335
    # straight-through at 3000 steps) or straight-through (relaxed gradient, 14-24 % biased)
    x_gradient: Literal["straight-through", "score-function"] = "score-function"
    mi_upper_bound: float | None = None  # paper 4.1: a cap on an MI estimate, nats
    # which estimate (objectives.caps): the rate, or H(x) - distortion (App. C.1; mog only)
    mi_upper_bound_on: Literal["rate", "distortion"] = "rate"
    mode: Literal["fixed", "lagrangian"] = "fixed"  # lagrangian: dual ascent on `dual.slack`
    dual: DualConfig = field(default_factory=DualConfig)
