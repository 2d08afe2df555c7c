"""Named models of the family as Lagrangians: coefficients, not code.

Paper Section 2.5 (Eq. 12-15 and items 3-6), Theorems 1-3 and Section 3.4. Adding a model
costs one entry in PRESETS; the compiler derives its loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from objectives.terms import FamilyError, Lagrangian, as_fraction

if TYPE_CHECKING:
    from objectives.config import ObjectiveConfig

F = Fraction


@dataclass(frozen=True)
class Preset:
    """A named Lagrangian with parameters (defaults given) and where the paper states it."""

    name: str
    build: Callable[[Mapping[str, Fraction]], Lagrangian]  # parameters -> Lagrangian
    params: Mapping[str, float] = field(default_factory=dict)
    paper: str = ""
    note: str = ""

    def __call__(self, **values: float | str | Fraction) -> Lagrangian:
        unknown = sorted(set(values) - set(self.params))
        if unknown:
            allowed = ", ".join(self.params) or "none"
            raise FamilyError(
                f"preset {self.name}: unknown parameter {unknown[0]!r} (allowed: {allowed})"
            )
        merged = {
            k: as_fraction(values.get(k, v), f"{self.name}.{k}") for k, v in self.params.items()
        }
        return self.build(merged)


def _terms(alpha1: Fraction, alpha2: Fraction, terms: Mapping[str, Fraction]) -> Lagrangian:
    return Lagrangian(alpha1, alpha2, dict(terms))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "elbo",
            lambda p: _terms(F(0), F(0), {"KL(q(x|z)||p(x|z))": F(1), "KL(q(z)||p(z))": F(1)}),
            paper="Eq. 12",
            note="the VAE's evidence lower bound, Lagrangian of the C3 constraints",
        ),
        Preset(
            "elbo-13",
            lambda p: _terms(F(0), F(0), {"KL(q(z|x)||p(z|x))": F(1), "KL(q(x)||p(x))": F(1)}),
            paper="Eq. 13",
            note="the same ELBO written for the C2 constraints",
        ),
        Preset(
            "beta-vae",
            lambda p: _terms(
                F(0), p["beta"] - 1, {"KL(q(x|z)||p(x|z))": F(1), "KL(q(z)||p(z))": p["beta"]}
            ),
            params={"beta": 4.0},
            paper="Eq. 15 (Higgins et al. 2016)",
        ),
        Preset(
            "vmi",
            lambda p: _terms(
                -p["weight"],
                F(0),
                {
                    "KL(p(z|x)||q(z|x))": p["weight"],
                    "KL(q(x|z)||p(x|z))": F(1),
                    "KL(q(z)||p(z))": F(1),
                },
            ),
            params={"weight": 1.0},
            paper="Theorem 1 (Barber & Agakov 2003)",
            note="L_VMI = -I_p + KL(p(z|x)||q(z|x)) has no constraint set of its own; it is "
            "added with `weight` to the ELBO (Eq. 12), as Theorem 1's linear combinations are",
        ),
        Preset(
            "kl-infogan",
            lambda p: _terms(
                F(-1),
                F(0),
                {
                    "KL(p(z|x)||q(z|x))": F(1),
                    "KL(p(x)||q(x))": p["lambda1"],
                    "KL(q(x)||p(x))": p["lambda2"],
                },
            ),
            params={"lambda1": 1.0, "lambda2": 1.0},
            paper="Theorem 2, L_InfoGAN",
        ),
        Preset(
            "infogan",
            lambda p: _terms(
                F(-1), F(0), {"KL(p(z|x)||q(z|x))": F(1), "JS(p(x)||q(x))": p["lambda1"]}
            ),
            params={"lambda1": 1.0},
            paper="Section 2.5 item 3 (Chen et al. 2016)",
        ),
        Preset(
            "kl-infovae",
            lambda p: _terms(
                F(0),
                p["alpha"],
                {
                    "KL(q(x|z)||p(x|z))": F(1),
                    "KL(q(z)||p(z))": p["lambda1"],
                    "KL(p(z)||q(z))": p["lambda2"],
                },
            ),
            params={"alpha": 0.0, "lambda1": 2.0, "lambda2": 1.0},
            paper="Theorem 2, L_InfoVAE",
        ),
        Preset(
            "mmd-vae",
            lambda p: _terms(
                F(0), p["alpha"], {"KL(q(x|z)||p(x|z))": F(1), "MMD(p(z)||q(z))": p["lambda"]}
            ),
            params={"alpha": -1.0, "lambda": 1000.0},
            paper="Section 3.4, L_MMD-VAE (Zhao et al. 2017)",
        ),
        Preset(
            "infovae",
            lambda p: _terms(
                F(0),
                p["beta"] - 1,
                {
                    "KL(q(x|z)||p(x|z))": F(1),
                    "KL(q(z)||p(z))": p["beta"],
                    "MMD(q(z)||p(z))": p["lambda"],
                },
            ),
            params={"beta": 1.0, "lambda": 1000.0},
            paper="Section 4.2, L_InfoVAE = L_β-ELBO + λ D(q(z)||p(z)) with D = MMD",
        ),
        Preset(
            "aae",
            lambda p: _terms(F(0), F(-1), {"KL(q(x|z)||p(x|z))": F(1), "JS(q(z)||p(z))": F(1)}),
            paper="Section 2.5 item 4 (Makhzani et al. 2015)",
        ),
        Preset(
            "bigan",
            lambda p: _terms(F(0), F(0), {"JS(q(x,z)||p(x,z))": F(1)}),
            paper="Section 2.5 item 5 (ALI/BiGAN: Dumoulin et al., Donahue et al. 2016)",
        ),
        Preset(
            "alice",
            lambda p: _terms(F(0), F(-1), {"KL(q(x|z)||p(x|z))": F(1), "JS(q(x,z)||p(x,z))": F(1)}),
            paper="Section 2.5 item 5 (Li et al. 2017)",
        ),
        Preset(
            "cyclegan",
            lambda p: _terms(
                F(-1),
                F(-1),
                {
                    "KL(q(x|z)||p(x|z))": F(1),
                    "KL(p(z|x)||q(z|x))": F(1),
                    "JS(q(x)||p(x))": F(1),
                    "JS(q(z)||p(z))": F(1),
                },
            ),
            paper="Section 2.5 item 6 (CycleGAN/DiscoGAN)",
        ),
        Preset(
            "avb",
            lambda p: _terms(F(0), F(0), {"KL(q(x,z)||p(x,z))": F(1)}),
            paper="Abstract and Section 5 (Mescheder et al. 2017)",
            note="the ELBO as KL(q(x,z)||p(x,z)); AVB's implicit encoder is an estimator "
            "choice, not a different Lagrangian",
        ),
        Preset(
            "kl-infobigan",
            lambda p: _terms(
                p["alpha"],
                F(0),
                {
                    "KL(p(z|x)||q(z|x))": F(1),
                    "KL(p(x)||q(x))": p["lambda1"],
                    "KL(q(x)||p(x))": p["lambda2"],
                },
            ),
            params={"alpha": 1.0, "lambda1": 3.0, "lambda2": 1.0},
            paper="Theorem 3, L_InfoBiGAN",
        ),
    ]
}
ALIASES = {
    "vae": "elbo",
    "beta-elbo": "beta-vae",
    "ali": "bigan",
    "discogan": "cyclegan",
    "infobigan": "kl-infobigan",
}


def get_preset(name: str) -> Preset:
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        known = ", ".join([*PRESETS, *ALIASES])
        raise FamilyError(f"unknown preset {name!r}; known presets: {known}")
    return PRESETS[key]


def resolve(objective: ObjectiveConfig) -> Lagrangian:
    """The Lagrangian an experiment's `objective` section describes."""
    if objective.preset is not None:
        return get_preset(objective.preset)(**dict(objective.params))
    return Lagrangian.from_values(objective.alpha1, objective.alpha2, objective.lambdas)
