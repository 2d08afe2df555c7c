"""Compile a Lagrangian of the family into a tractable form, or say why it has none.

Paper, Section 3 (Definitions 5-8, Theorems 1-3) and Appendix B. An objective is computable
in a toolbox when it equals a combination of that toolbox's terms plus elementary
transformations (span P). `compile_lagrangian` finds the cheapest such toolbox by exact
Gaussian elimination over fractions and returns the tractable form it found, checked to be
equivalent to the input; an objective no toolbox reaches is `intractable`, with the residual
coordinates that no elementary transformation removes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from typing import TYPE_CHECKING, Literal

from objectives.presets import resolve
from objectives.terms import (
    TOOLBOXES,
    FamilyError,
    Lagrangian,
    Vector,
    add,
    parse_divergence,
    scale,
    term_vector,
)
from objectives.toolboxes import (
    ALL_COORDINATES,
    BINARY_LIKELIHOOD_FREE,
    LAGRANGIAN_TERMS,
    LIKELIHOOD_BASED,
    TOOLBOX_TERMS,
    UNARY_LIKELIHOOD_FREE,
    elementary_transformations,
    toolbox_of,
)

if TYPE_CHECKING:
    from objectives.config import ObjectiveConfig

ToolboxResult = Literal[
    "likelihood-based", "unary-likelihood-free", "binary-likelihood-free", "intractable"
]
ORDER = {name: i for i, name in enumerate(ALL_COORDINATES)}


# --------------------------------------------------------------------------- exact elimination


@dataclass
class _Row:
    vector: Vector  # zero on every earlier row's pivot
    pivot: str
    combination: Vector  # the tractable terms this row stands for (empty for P rows)


@dataclass
class Echelon:
    """An incrementally built echelon basis that remembers what each row is made of."""

    rows: list[_Row] = field(default_factory=list)

    def reduce(self, vector: Mapping[str, Fraction]) -> tuple[Vector, Vector]:
        """(remainder, combination): vector = remainder + Σ combination·terms + span(P)."""
        remainder: Vector = dict(vector)
        combination: Vector = {}
        for row in self.rows:
            factor = remainder.get(row.pivot)
            if factor:
                remainder = add(remainder, scale(row.vector, -factor))
                combination = add(combination, scale(row.combination, factor))
        return remainder, combination

    def insert(self, vector: Mapping[str, Fraction], label: str | None = None) -> bool:
        """Add a vector (labelled by its term, or None for P); False if it is dependent."""
        own = {label: Fraction(1)} if label else {}
        remainder, combination = self.reduce(vector)
        if not remainder:
            return False
        pivot = min(remainder, key=ORDER.__getitem__)
        lead = remainder[pivot]
        row = _Row(
            scale(remainder, 1 / lead),
            pivot,
            scale(add(own, scale(combination, Fraction(-1))), 1 / lead),
        )
        for other in self.rows:  # keep every row zero on every pivot (reduced echelon form)
            factor = other.vector.get(pivot)
            if factor:
                other.vector = add(other.vector, scale(row.vector, -factor))
                other.combination = add(other.combination, scale(row.combination, -factor))
        self.rows.append(row)
        return True


def rank(vectors: Iterable[Mapping[str, Fraction]]) -> int:
    echelon = Echelon()
    return sum(echelon.insert(v) for v in vectors)


@cache
def _basis() -> Echelon:
    """P first, then the tractable terms in order of preference (cheapest toolbox first)."""
    echelon = Echelon()
    for column in elementary_transformations():
        echelon.insert(column)
    for toolbox in TOOLBOXES:
        for term in TOOLBOX_TERMS[toolbox]:
            echelon.insert(term_vector(term), label=term)
    return echelon


def is_equivalent(a: Mapping[str, Fraction], b: Mapping[str, Fraction]) -> bool:
    """Definition 6 restricted to elementary transformations: a - b lies in span(P)."""
    echelon = Echelon()
    for column in elementary_transformations():
        echelon.insert(column)
    remainder, _ = echelon.reduce(add(a, scale(b, Fraction(-1))))
    return not remainder


def form_vector(form: Mapping[str, Fraction]) -> Vector:
    total: Vector = {}
    for term, weight in form.items():
        total = add(total, scale(term_vector(term), weight))
    return total


# --------------------------------------------------------------------------- compile


@dataclass(frozen=True)
class Compiled:
    """The result of compiling one Lagrangian."""

    lagrangian: Lagrangian
    toolbox: ToolboxResult
    constraint_set: str  # the first of C1, C2, C3 the divergence terms contain
    constraint_sets: tuple[str, ...]  # all of them
    tractable_form: dict[str, Fraction]  # the loss to minimise: Σ coefficient · term
    residual: dict[str, Fraction]  # non-empty iff intractable

    @property
    def tractable(self) -> bool:
        return self.toolbox != "intractable"

    def to_json(self) -> dict[str, object]:
        return {
            "toolbox": self.toolbox,
            "constraint_set": self.constraint_set,
            "constraint_sets": list(self.constraint_sets),
            "tractable_form": {t: float(c) for t, c in self.tractable_form.items()},
            "residual": {t: float(c) for t, c in self.residual.items()},
        }

    def coefficients(self) -> dict[str, float]:
        """The tractable form as floats, for the torch side."""
        return {t: float(c) for t, c in self.tractable_form.items()}


def constraint_sets(terms: Iterable[str]) -> tuple[str, ...]:
    """Which of C1, C2, C3 (Eq. 9-11) the divergence terms contain; any strict divergence
    in either direction counts as D or D' (reverse KL is a strict divergence too)."""
    factors = {parse_divergence(t).factor for t in terms}
    found = []
    if "x,z" in factors:
        found.append("C1")
    if {"x", "z|x"} <= factors:
        found.append("C2")
    if {"z", "x|z"} <= factors:
        found.append("C3")
    return tuple(found)


def check_membership(lagrangian: Lagrangian) -> tuple[str, ...]:
    """Definition 5: every λ > 0 and one of C1/C2/C3 present. Returns the sets found."""
    for term, weight in lagrangian.lambdas.items():
        if weight <= 0:
            raise FamilyError(f"λ of {term} is {float(weight):g}: every multiplier must be > 0")
    found = constraint_sets(lagrangian.lambdas)
    if not found:
        present = ", ".join(lagrangian.lambdas) or "none"
        raise FamilyError(
            "no constraint set: the divergences must include C1 = {D(p(x,z)||q(x,z))}, "
            "C2 = {D(p(x)||q(x)), D'(p(z|x)||q(z|x))} or C3 = {D(p(z)||q(z)), "
            "D'(p(x|z)||q(x|z))} (either direction); got " + present
        )
    return found


def reduce_to_tractable(vector: Mapping[str, Fraction]) -> tuple[dict[str, Fraction], Vector]:
    """(tractable form, residual) of any objective vector, membership not checked.

    The form uses the preferred independent tractable terms; the residual is what is left
    after every tractable term and elementary transformation has been used (zero iff the
    objective is computable in the binary likelihood-free toolbox).
    """
    remainder, combination = _basis().reduce(vector)
    order = [t for box in TOOLBOXES for t in TOOLBOX_TERMS[box]]
    form = {t: combination[t] for t in order if combination.get(t)}
    assert is_equivalent(add(form_vector(form), remainder), vector), "compiler invariant broken"
    return form, dict(sorted(remainder.items(), key=lambda kv: ORDER[kv[0]]))


def compile_lagrangian(lagrangian: Lagrangian) -> Compiled:
    """Cheapest toolbox, tractable form and constraint set of one family member."""
    found = check_membership(lagrangian)
    form, residual = reduce_to_tractable(lagrangian.vector())
    if residual:
        toolbox: ToolboxResult = "intractable"
    else:
        levels = [TOOLBOXES.index(toolbox_of(term)) for term in form] or [0]
        toolbox = TOOLBOXES[max(levels)]
    return Compiled(lagrangian, toolbox, found[0], found, form, residual)


def compile_objective(objective: ObjectiveConfig) -> Compiled:
    """Resolve an experiment's `objective` (preset or Lagrangian) and compile it."""
    return compile_lagrangian(resolve(objective))


def term_form(term: str) -> tuple[dict[str, Fraction], Vector]:
    """Tractable form and residual of one divergence term with λ = 1 (for dual ascent:
    the tractable form is linear in λ, so a tractable term's λ can move freely)."""
    return reduce_to_tractable(term_vector(parse_divergence(term).name))


# --------------------------------------------------------------------------- Appendix B table


def _span_dimension(*groups: Sequence[Mapping[str, Fraction]]) -> int:
    return rank(v for group in groups for v in group)


def dimension_table() -> list[tuple[str, int]]:
    """The six rows of the Appendix B table, computed from the matrices (13, 13, 17, 17, 18, 18).

    dim(A ∩ B) = dim A + dim B - dim(A + B). R is spanned by the 12 terms of (16); the S
    families by the free directions of each named objective (Eq. 18-21, Theorems 2-3).
    """
    v = term_vector
    p_columns = elementary_transformations()
    r_space = [v(t) for t in LAGRANGIAN_TERMS]
    kl_only = [t for t in UNARY_LIKELIHOOD_FREE + BINARY_LIKELIHOOD_FREE if t.startswith("KL")]
    t_lb = [v(t) for t in LIKELIHOOD_BASED]
    t_ulf = t_lb + [v(t) for t in kl_only if toolbox_of(t) == "unary-likelihood-free"]
    t_blf = t_lb + [v(t) for t in kl_only]

    def combo(*parts: tuple[int, str]) -> Vector:
        return form_vector({t: Fraction(w) for w, t in parts})

    s_vmi = [combo((-1, "I_p"), (1, "KL(p(z|x)||q(z|x))"))]
    s_beta = [
        combo((-1, "I_q"), (1, "KL(q(x|z)||p(x|z))")),  # the λ1 direction of Eq. 20
        combo((1, "I_q"), (1, "KL(q(z)||p(z))")),  # the λ2 direction
    ]
    s_infogan = s_vmi + [v("KL(p(x)||q(x))"), v("KL(q(x)||p(x))")]
    s_infovae = [
        v("KL(q(x|z)||p(x|z))"),
        v("I_q"),
        v("KL(q(z)||p(z))"),
        v("KL(p(z)||q(z))"),
    ]
    s_infobigan = [
        v("KL(p(z|x)||q(z|x))"),
        v("I_p"),
        v("KL(p(x)||q(x))"),
        v("KL(q(x)||p(x))"),
    ]

    def intersection(a: list[Vector], b: list[Vector]) -> int:
        return _span_dimension(a) + _span_dimension(b) - _span_dimension(a, b)

    rp = r_space + p_columns
    return [
        ("(S_β-ELBO + S_VMI) + P", _span_dimension(s_beta, s_vmi, p_columns)),
        ("(T_lb + P) ∩ (R + P)", intersection(t_lb + p_columns, rp)),
        ("(S_InfoGAN ∪ S_InfoVAE) + P", _span_dimension(s_infogan, s_infovae, p_columns)),
        ("(T_ulf + P) ∩ (R + P)", intersection(t_ulf + p_columns, rp)),
        ("(S_InfoBiGAN ∪ S_InfoVAE) + P", _span_dimension(s_infobigan, s_infovae, p_columns)),
        ("(T_blf + P) ∩ (R + P)", intersection(t_blf + p_columns, rp)),
    ]
