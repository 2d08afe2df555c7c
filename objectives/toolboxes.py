"""The equivalences and the toolboxes of the family: P, R and T1-T3 as vectors.

Paper, Definition 8 (the 10 elementary transformations P: objectives equivalent to 0), the 12
Lagrangian terms of (16) that span R, and Definition 7 (the tractable terms of the
likelihood-based, unary and binary likelihood-free toolboxes, in order of preference). The
coordinates and term vectors they are written in live in `objectives.terms`.
"""

from __future__ import annotations

from fractions import Fraction

from objectives.terms import (
    CONDITIONALS,
    COORDINATES,
    MARGINALS,
    SIDES,
    SYMMETRIC,
    Divergence,
    Toolbox,
    Vector,
    expectation,
)

# --------------------------------------------------------------------------- Definition 8


def elementary_transformations() -> list[Vector]:
    """The 10 columns of P: each is an objective equivalent to 0 (Definition 8).

    Chain rules E_*[log d(x,z) - log d(x) - log d(z|x)] and E_*[log d(x,z) - log d(z) -
    log d(x|z)] for E_* in {E_p, E_q} and d in {p, q} (8 columns), and the parameter-free
    terms E_q[log q(x)] (the data entropy) and E_p[log p(z)] (the prior entropy).
    """
    columns: list[Vector] = []
    for e in SIDES:
        for d in SIDES:
            for marginal, conditional in (("x", "z|x"), ("z", "x|z")):
                columns.append(
                    {
                        expectation(e, d, "x,z"): Fraction(1),
                        expectation(e, d, marginal): Fraction(-1),
                        expectation(e, d, conditional): Fraction(-1),
                    }
                )
    columns.append({expectation("q", "q", "x"): Fraction(1)})
    columns.append({expectation("p", "p", "z"): Fraction(1)})
    return columns


# --------------------------------------------------------------------------- (16) and Def. 7

# The 12 Lagrangian terms of (16): the space R of the proof.
LAGRANGIAN_TERMS: tuple[str, ...] = (
    "I_p",
    "I_q",
    "KL(p(x,z)||q(x,z))",
    "KL(q(x,z)||p(x,z))",
    "KL(p(x)||q(x))",
    "KL(q(x)||p(x))",
    "KL(p(z)||q(z))",
    "KL(q(z)||p(z))",
    "KL(p(z|x)||q(z|x))",
    "KL(q(z|x)||p(z|x))",
    "KL(p(x|z)||q(x|z))",
    "KL(q(x|z)||p(x|z))",
)


def _atoms(on: str) -> tuple[str, ...]:
    factors = {"marginal": MARGINALS, "joint": ("x,z",), "conditional": CONDITIONALS}[on]
    return tuple(Divergence(kind, "q", f).name for kind in SYMMETRIC for f in factors)


# Tractable terms of Definition 7, by toolbox, in order of preference: when the same
# objective can be written several ways, the earlier terms are used (so the ELBO reads
# -E_q[log p(x|z)] + E_q[log q(z|x)] - E_q[log p(z)], as the paper prints it).
LIKELIHOOD_BASED: tuple[str, ...] = (  # T1
    "E_q[log p(x|z)]",
    "E_q[log q(z|x)]",
    "E_q[log p(z)]",
    "E_p[log q(z|x)]",
    "E_p[log p(x|z)]",
    "E_q[log p(x,z)]",
    "E_p[log p(x,z)]",
    "E_p[log p(z)]",
)
UNARY_LIKELIHOOD_FREE: tuple[str, ...] = (  # T2, with D KL in both directions, MMD or JS
    "KL(q(x)||p(x))",
    "KL(p(x)||q(x))",
    "KL(q(z)||p(z))",
    "KL(p(z)||q(z))",
    *_atoms("marginal"),
)
BINARY_LIKELIHOOD_FREE: tuple[str, ...] = (  # T3
    "KL(p(x,z)||q(x,z))",
    "KL(q(x,z)||p(x,z))",
    *_atoms("joint"),
)
TOOLBOX_TERMS: dict[Toolbox, tuple[str, ...]] = {
    "likelihood-based": LIKELIHOOD_BASED,
    "unary-likelihood-free": UNARY_LIKELIHOOD_FREE,
    "binary-likelihood-free": BINARY_LIKELIHOOD_FREE,
}
INTRACTABLE_ATOMS: tuple[str, ...] = _atoms("conditional")
ALL_COORDINATES: tuple[str, ...] = (
    COORDINATES + _atoms("marginal") + _atoms("joint") + INTRACTABLE_ATOMS
)


def toolbox_of(term: str) -> Toolbox:
    """The cheapest toolbox holding a tractable term."""
    for toolbox, terms in TOOLBOX_TERMS.items():
        if term in terms:
            return toolbox
    raise KeyError(term)
