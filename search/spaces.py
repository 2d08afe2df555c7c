"""Search spaces over the Lagrange multipliers (α1, α2, λ), per family, as data.

Paper: Definition 5 (the family: α1 I_p + α2 I_q + Σ λ_i D_i with every λ_i > 0), Theorems 1-3
(the tractable sub-families and their free parameters) and Section 4.2 (λ up to 5000).

A space is a tuple of `Param`s: a dotted experiment key (what `Experiment.with_values` sets),
a range and whether it is sampled log-uniformly. λ ranges are log-uniform, α and β linear.
The `FAMILIES` registry holds each named family's preset and default ranges; nothing here
trains or samples.

An experiment's `space:` section names a family, lists dotted keys, or both:

    space:                                   # a named family, ranges overridden by short name
      family: kl-infovae                     # its preset must be the experiment's objective
      lambda1: {low: 1, high: 5000}          # a bound left out keeps the family's default

    space:                                   # the general Lagrangian (objective: {lambdas: ...})
      family: lagrangian
      alpha2: {low: -1, high: 1}             # alpha1 / alpha2: searched when listed
      lambdas:                               # chosen terms: a list (range LAMBDA_RANGE, log)
        KL(q(z)||p(z)): {low: 1, high: 5000} #   or term -> range
                                             # nothing listed: alpha2 and every λ of the objective
    space:                                   # explicit dotted keys (alone or beside a family)
      params:
        objective.params.beta: {low: 0.1, high: 3}
        train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}

`log` defaults to true for a λ (an `objective.lambdas.*` key or a preset's `lambda*`) and to
false otherwise. Families: beta-elbo (β), kl-infovae (α, λ1, λ2), mmd-vae (α, λ), infovae
(β, λ: Section 4.2), kl-infogan (λ1, λ2), infogan (λ1 of JS), kl-infobigan (α, λ1, λ2)
and lagrangian.

`search.space_config.parse_space` reads and validates an experiment's `space:` section into a
`Space`; `search.feasibility` compiles it before any trial runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from objectives.terms import FamilyError, canonical_term

LAMBDA_RANGE = (0.1, 5000.0)  # default λ range of the general space (paper 4.2 goes to 5000)
ALPHA_RANGE = (-1.0, 1.0)  # default α range: information minimising (>0) to maximising (<0)


@dataclass(frozen=True)
class Param:
    """One searched number: a dotted experiment key and its range."""

    key: str  # dotted experiment key, e.g. "objective.params.beta"
    low: float
    high: float
    log: bool = False  # sample log-uniformly (λ) or uniformly (α, β)
    multiplier: bool = False  # a Lagrange multiplier λ: the whole range must stay > 0

    @property
    def name(self) -> str:
        """Short name: the parameter or term after the section, e.g. "beta"."""
        for section in ("objective.params.", "objective.lambdas.", "objective."):
            if self.key.startswith(section):
                return self.key[len(section) :]
        return self.key

    def grid(self, points: int) -> list[float]:
        """`points` values from low to high, evenly spaced (geometrically when log)."""
        if points == 1:
            return [self.middle]
        if self.log:
            ratio = math.log(self.high / self.low) / (points - 1)
            inner = [self.low * math.exp(ratio * i) for i in range(1, points - 1)]
        else:
            inner = [
                self.low + (self.high - self.low) * i / (points - 1) for i in range(1, points - 1)
            ]
        return [self.low, *inner, self.high]  # exact ends: samplers check values against them

    @property
    def middle(self) -> float:
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Family:
    """A tractable sub-family of the paper: its preset and default parameter ranges."""

    name: str
    preset: str | None  # the objective preset it searches; None: the Lagrangian form
    params: Mapping[str, Param] = field(default_factory=dict)  # short name -> default range
    paper: str = ""


def lambda_param(key: str, low: float, high: float) -> Param:
    """A Lagrange multiplier λ: log-uniform, and its whole range must stay > 0."""
    return Param(key, low, high, log=True, multiplier=True)


def _family(name: str, paper: str, preset: str | None, **ranges: tuple[float, float]) -> Family:
    """A family from its parameters' ranges: `lambda*` are multipliers (log, > 0), `alpha*`
    and `beta` linear; a preset's parameters are `objective.params.*`, the Lagrangian's α
    `objective.alpha1` / `objective.alpha2`."""
    section = "objective.params." if preset else "objective."
    params = [
        lambda_param(section + n, *r) if n.startswith("lambda") else Param(section + n, *r)
        for n, r in ranges.items()
    ]
    return Family(name, preset, {p.name: p for p in params}, paper)


A, BETA = ALPHA_RANGE, (0.1, 3.0)
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        _family(
            "beta-elbo",
            "Theorem 1 / Eq. 15: (β-1) I_q + KL(q(x|z)||p(x|z)) + β KL(q(z)||p(z))",
            "beta-vae",
            beta=BETA,
        ),
        _family(
            "kl-infovae",
            "Theorem 2, L_InfoVAE: α I_q + KL(q(x|z)||p(x|z)) + λ1 KL(q(z)||p(z)) "
            "+ λ2 KL(p(z)||q(z))",
            "kl-infovae",
            alpha=A, lambda1=(0.5, 5000.0), lambda2=(0.1, 100.0),
        ),
        _family(
            "mmd-vae",
            "Section 3.4, L_MMD-VAE: α I_q + KL(q(x|z)||p(x|z)) + λ MMD(p(z)||q(z))",
            "mmd-vae",
            alpha=A, **{"lambda": (1.0, 5000.0)},
        ),
        _family(
            "infovae",
            "Section 4.2: L_β-ELBO + λ MMD(q(z)||p(z)), the paper's MNIST search",
            "infovae",
            beta=BETA, **{"lambda": (1.0, 5000.0)},
        ),
        _family(
            "kl-infogan",
            "Theorem 2, L_InfoGAN: -I_p + KL(p(z|x)||q(z|x)) + λ1 KL(p(x)||q(x)) "
            "+ λ2 KL(q(x)||p(x))",
            "kl-infogan",
            lambda1=(0.1, 100.0), lambda2=(0.1, 100.0),
        ),
        _family(
            "infogan",
            "Section 2.5 item 3: -I_p + KL(p(z|x)||q(z|x)) + λ1 JS(p(x)||q(x))",
            "infogan",
            lambda1=(0.1, 100.0),
        ),
        _family(
            "kl-infobigan",
            "Theorem 3, L_InfoBiGAN: α I_p + KL(p(z|x)||q(z|x)) + λ1 KL(p(x)||q(x)) "
            "+ λ2 KL(q(x)||p(x))",
            "kl-infobigan",
            alpha=A, lambda1=(0.1, 100.0), lambda2=(0.1, 100.0),
        ),
        _family(
            "lagrangian",
            "Definition 5: α1 I_p + α2 I_q + Σ λ_i D_i over chosen terms",
            None,
            alpha1=A, alpha2=A,
        ),
    ]
}  # fmt: skip
FAMILY_ALIASES = {"beta-vae": "beta-elbo", "infobigan": "kl-infobigan"}


@dataclass(frozen=True)
class Space:
    """The parameters one search samples; `family` is None for explicit `params` only."""

    params: tuple[Param, ...]
    family: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def __getitem__(self, key: str) -> Param:
        """A parameter by dotted key, short name, or (for a λ) any spelling of its term."""
        for param in self.params:
            if key in (param.key, param.name) or _same_term(key, param):
                return param
        raise KeyError(key)


def _same_term(name: str, param: Param) -> bool:
    if "(" not in name or not param.key.startswith("objective.lambdas."):
        return False
    try:
        return canonical_term(name) == canonical_term(param.name)
    except FamilyError:
        return False


def describe(space: Space) -> Iterable[str]:
    """One line per parameter, for people: `key in [low, high] (log)`."""
    for p in space.params:
        yield f"{p.key} in [{p.low:g}, {p.high:g}]{' (log)' if p.log else ''}"
