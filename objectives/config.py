"""The config types of an objective and of a model: what the family layer needs to build a loss.

They are the `objective:` and `model:` sections of an experiment file (DESIGN.md, "Experiment
file"); `search.config` reads the file into them. Frozen dataclasses: one field per key, with
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
    kernel: Literal["imq", "rbf"] = "imq"  # MMD kernel
    mi_upper_bound: float | None = None  # paper 4.1: cap on the rate E KL(q(z|x)||p(z)), nats
    mode: Literal["fixed", "lagrangian"] = "fixed"  # lagrangian: dual ascent on `dual.slack`
    dual: DualConfig = field(default_factory=DualConfig)
