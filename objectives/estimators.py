"""One estimator per tractable term of the family (paper Definition 7): the registry.

A compiled objective is a tractable form {term: coefficient}; the loss to minimise is
Σ coefficient · term (`objectives.loss.FamilyLoss`). `ESTIMATORS` maps each term name to an
`Estimator`: the parameter groups it moves, how it is estimated from one shared forward pass
(`objectives.record.ForwardRecord`: likelihood terms T1 are small pure functions of it,
divergences T2 and T3 small modules, `objectives.divergences`), and the noise it reads. A new
term is one entry here (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from objectives.implicit import ADVERSARY_TERM
from objectives.record import (
    VARIABLE_DRAWS,
    ForwardRecord,
    Variables,
    XGradient,
    ep_log_joint,
    ep_log_likelihood,
    ep_log_posterior,
    ep_log_prior,
    eq_log_joint,
    eq_log_likelihood,
    eq_log_posterior,
    eq_log_prior,
)

# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Estimator:
    """How one tractable term is estimated, which of p ("p") and q ("q") it moves, and the
    noise of the record it reads (`objectives.record.VARIABLE_DRAWS`), in first-use order."""

    groups: frozenset[str]
    likelihood: Callable[[ForwardRecord], Tensor] | None = None  # T1: a pure function
    divergence: Literal["KL(q||p)", "KL(p||q)", "JS", "MMD"] | None = None  # T2/T3
    variables: Variables | None = None  # what the divergence compares
    reads: tuple[str, ...] = ()  # a likelihood term's noise (a divergence's: its variables')
    implicit_reads: tuple[str, ...] | None = None  # under an implicit encoder, if different

    def draws(self, implicit: bool, x_gradient: XGradient) -> tuple[str, ...]:
        """The noise this term reads, in first use. A divergence on x or (x, z) first decides
        whether x ~ p(x|z) is a hard score-function draw, which builds p(x|z) at z ~ p(z)."""
        if self.variables is None:
            return (
                self.implicit_reads if implicit and self.implicit_reads is not None else self.reads
            )
        draws = VARIABLE_DRAWS[self.variables]
        if x_gradient == "score-function" and self.variables in ("x", "x,z"):
            return ("z_p", *draws)
        return draws


P, Q, PQ, NONE = frozenset("p"), frozenset("q"), frozenset("pq"), frozenset()

ESTIMATORS: dict[str, Estimator] = {
    "E_q[log p(x|z)]": Estimator(PQ, eq_log_likelihood, reads=("z_q",)),
    "E_q[log p(z)]": Estimator(Q, eq_log_prior, implicit_reads=("z_q",)),
    "E_q[log q(z|x)]": Estimator(Q, eq_log_posterior),
    "E_q[log p(x,z)]": Estimator(PQ, eq_log_joint, reads=("z_q",)),
    "E_p[log p(x|z)]": Estimator(P, ep_log_likelihood, reads=("z_p",)),
    "E_p[log p(x,z)]": Estimator(P, ep_log_joint, reads=("z_p",)),
    "E_p[log p(z)]": Estimator(NONE, ep_log_prior),
    "E_p[log q(z|x)]": Estimator(PQ, ep_log_posterior, reads=("z_p", "x_p")),
}
_MOVED_BY = {"x": P, "z": Q, "x,z": PQ}  # the data and the prior are fixed; samples carry the rest
for _v, _groups in _MOVED_BY.items():
    _q, _p = f"q({_v})", f"p({_v})"
    ESTIMATORS[f"KL({_q}||{_p})"] = Estimator(_groups, divergence="KL(q||p)", variables=_v)
    ESTIMATORS[f"KL({_p}||{_q})"] = Estimator(_groups, divergence="KL(p||q)", variables=_v)
    ESTIMATORS[f"JS({_q}||{_p})"] = Estimator(_groups, divergence="JS", variables=_v)
    ESTIMATORS[f"MMD({_q}||{_p})"] = Estimator(_groups, divergence="MMD", variables=_v)

# AVB's adversary T(x, z): E_x KL(q(z|x)||p(z)) for an encoder without a density
ESTIMATORS[ADVERSARY_TERM] = Estimator(Q, divergence="KL(q||p)", variables="x;z")

# Composite terms as sums of atoms (Definition 8), so cancelling coefficients cancel here too.
_ATOMS = {
    "E_q[log p(x,z)]": ("E_q[log p(x|z)]", "E_q[log p(z)]"),
    "E_p[log p(x,z)]": ("E_p[log p(x|z)]", "E_p[log p(z)]"),
}
_BY_COMPACT_NAME = {"".join(name.split()): name for name in ESTIMATORS}


# The terms whose coefficients sum to α2 in any tractable form (`information_preference`)
INFORMATION_TERMS = ("E_q[log q(z|x)]", "E_q[log p(x|z)]", "E_q[log p(x,z)]")


def term_name(text: str) -> str:
    """The registry's spelling of a term; names are whitespace-insensitive (docs/OBJECTIVES.md)."""
    name = _BY_COMPACT_NAME.get("".join(text.split()))
    if name is None:
        raise ValueError(f"unknown tractable term {text!r}; known terms: {', '.join(ESTIMATORS)}")
    return name


def coefficients_of(tractable_form: Mapping[str, float]) -> dict[str, float]:
    """{registry name: total coefficient} of a form written with any spelling of the names."""
    out: dict[str, float] = {}
    for text, coefficient in tractable_form.items():
        name = term_name(text)
        out[name] = out.get(name, 0.0) + float(coefficient)
        assert math.isfinite(out[name]), f"coefficient of {name} must be finite, got {coefficient}"
    return out


def expected_gradient_groups(tractable_form: Mapping[str, float]) -> set[str]:
    """The parameter groups ("p" decoder, "q" encoder) whose gradient the form should reach.

    Each term moves the groups in its `Estimator.groups` (e.g. E_q[log p(x|z)] -> p and q,
    E_p[log p(z)] -> none); composite terms are split into atoms first and terms whose total
    coefficient is zero move nothing.
    """
    atoms: dict[str, float] = {}
    for name, coefficient in coefficients_of(tractable_form).items():
        for atom in _ATOMS.get(name, (name,)):
            atoms[atom] = atoms.get(atom, 0.0) + coefficient
    return {g for name, c in atoms.items() if c != 0.0 for g in ESTIMATORS[name].groups}


def information_preference(tractable_form: Mapping[str, float]) -> float:
    """α2, the Lagrangian's coefficient of I_q(x;z), read off a tractable form.

    In Definition 5, E_q[log q(z|x)] enters through α2 I_q (coefficient α2) and through
    KL(q(x|z)||p(x|z)), KL(q(z|x)||p(z|x)) and KL(q(x,z)||p(x,z)), each of which pairs
    +λ E_q[log q(z|x)] with -λ E_q[log p(x|z)] (via log p(x,z) = log p(x|z) + log p(z)).
    The elementary transformations keep that pairing, so in any tractable form
    α2 = c(E_q[log q(z|x)]) + c(E_q[log p(x|z)]) + c(E_q[log p(x,z)]).
    β-VAE (Theorem 1): β - 1. InfoVAE (Theorem 2): α. AAE: -1.
    """
    c = coefficients_of(tractable_form)
    return sum(c.get(name, 0.0) for name in INFORMATION_TERMS)
