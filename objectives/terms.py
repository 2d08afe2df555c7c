"""The term space of the Information-Autoencoding family, as exact linear algebra.

Paper: "The Information-Autoencoding Family: A Lagrangian Perspective on Latent Variable
Generative Modeling", Section 3 and the proof of Theorems 1-3 (Appendix B).

Every KL objective of the family is a linear combination of 20 coordinates
E_e[log d(f)] with e, d in {p, q} and f in {x,z | x | z | x|z | z|x}: a KL divergence is
E_a[log a] - E_a[log b], a mutual information is E[log joint - log marginals]. Two objectives
are equivalent (Definition 6) when they differ by a combination of the 10 elementary
transformations of Definition 8 (the matrix P). Non-KL strict divergences (MMD, JS; Section
3.4) are not sums of log-densities: each is its own coordinate ("atom"), tractable when it
is on a marginal or the joint, intractable on a conditional.

Vectors are dicts {coordinate name: Fraction}; coefficients are exact so that tractability is
never decided by a rounding error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

Vector = dict[str, Fraction]

SIDES = ("p", "q")
FACTORS = ("x,z", "x", "z", "x|z", "z|x")  # the joint, the two marginals, the two conditionals
MARGINALS = ("x", "z")
CONDITIONALS = ("x|z", "z|x")
DIVERGENCES = ("KL", "MMD", "JS")
SYMMETRIC = ("MMD", "JS")  # written with q first: MMD(p(z)||q(z)) is MMD(q(z)||p(z))
INFORMATION_TERMS = ("I_p", "I_q")

Toolbox = Literal["likelihood-based", "unary-likelihood-free", "binary-likelihood-free"]
TOOLBOXES: tuple[Toolbox, ...] = (
    "likelihood-based",
    "unary-likelihood-free",
    "binary-likelihood-free",
)


class FamilyError(ValueError):
    """An input that is not a member of the Info-Autoencoding family (Definition 5)."""


def expectation(under: str, density: str, factor: str) -> str:
    """Name of the coordinate E_under[log density(factor)], e.g. 'E_q[log p(x|z)]'."""
    return f"E_{under}[log {density}({factor})]"


COORDINATES: tuple[str, ...] = tuple(
    expectation(e, d, f) for e in SIDES for d in SIDES for f in FACTORS
)

_COMPACT_COORDINATES = {"".join(c.split()): c for c in COORDINATES}

# --------------------------------------------------------------------------- divergence terms

_TERM = re.compile(
    r"^(?P<kind>KL|MMD|JS)\((?P<a>[pq])\((?P<fa>x,z|z,x|x\|z|z\|x|x|z)\)"
    r"\|\|(?P<b>[pq])\((?P<fb>x,z|z,x|x\|z|z\|x|x|z)\)\)$"
)


@dataclass(frozen=True)
class Divergence:
    """D(a(f) || b(f)) for a strict divergence D, with a != b in {p, q}."""

    kind: str  # KL | MMD | JS
    first: str  # p | q
    factor: str  # one of FACTORS

    @property
    def second(self) -> str:
        return "q" if self.first == "p" else "p"

    @property
    def name(self) -> str:
        f = self.factor
        return f"{self.kind}({self.first}({f})||{self.second}({f}))"

    @property
    def on(self) -> Literal["joint", "marginal", "conditional"]:
        if self.factor == "x,z":
            return "joint"
        return "marginal" if self.factor in MARGINALS else "conditional"


def parse_divergence(text: str) -> Divergence:
    """Parse a divergence term, whitespace-insensitive; symmetric kinds are put q-first.

    >>> parse_divergence("KL( q(z) || p(z) )").name
    'KL(q(z)||p(z))'
    >>> parse_divergence("MMD(p(z)||q(z))").name
    'MMD(q(z)||p(z))'
    """
    compact = "".join(text.split())
    match = _TERM.match(compact)
    if match is None:
        raise FamilyError(
            f"unknown term {text!r}: expected I_p, I_q or D(a(f)||b(f)) with D in "
            f"{'/'.join(DIVERGENCES)}, a != b in p/q and f in {', '.join(FACTORS)}"
        )
    first, factor = match["a"], match["fa"].replace("z,x", "x,z")
    if match["b"] == first:
        raise FamilyError(f"term {text!r}: a divergence compares p with q, not {first} with itself")
    if match["fb"].replace("z,x", "x,z") != factor:
        raise FamilyError(f"term {text!r}: both sides must be over the same variables")
    kind = match["kind"]
    if kind in SYMMETRIC:
        first = "q"
    return Divergence(kind, first, factor)


def canonical_term(text: str) -> str:
    """The canonical spelling of a Lagrangian term name (I_p, I_q or a divergence)."""
    compact = "".join(text.split())
    if compact in INFORMATION_TERMS:
        return compact
    return parse_divergence(compact).name


# --------------------------------------------------------------------------- term vectors


def mutual_information(side: str) -> Vector:
    """I_side(x;z) = E_side[log side(x,z) - log side(x) - log side(z)]."""
    return {
        expectation(side, side, "x,z"): Fraction(1),
        expectation(side, side, "x"): Fraction(-1),
        expectation(side, side, "z"): Fraction(-1),
    }


def term_vector(name: str) -> Vector:
    """The coordinates of one Lagrangian or tractable term.

    A conditional KL is averaged under the first distribution's own joint (paper footnote 5):
    KL(q(x|z)||p(x|z)) = E_q[log q(x|z)] - E_q[log p(x|z)].
    """
    compact = "".join(name.split())
    if compact in INFORMATION_TERMS:
        return mutual_information(compact[-1])
    if compact.startswith("E_"):
        if compact not in _COMPACT_COORDINATES:
            raise FamilyError(f"unknown tractable term {name!r}")
        return {_COMPACT_COORDINATES[compact]: Fraction(1)}
    divergence = parse_divergence(compact)
    if divergence.kind != "KL":
        return {divergence.name: Fraction(1)}  # an atom: its own coordinate
    a, b, f = divergence.first, divergence.second, divergence.factor
    return {expectation(a, a, f): Fraction(1), expectation(a, b, f): Fraction(-1)}


# --------------------------------------------------------------------------- Lagrangians


DECIMALS = 9  # multipliers are read to 1e-9: finer differences are float noise, not intent


def as_fraction(value: float | int | str | Fraction, what: str) -> Fraction:
    """Exact value of a user number, to DECIMALS places: 0.1 is 1/10, not the binary float.

    A search computing λ1 = α + 1 in floating point may leave λ1 - α - 1 = 1e-17; reading
    every float to 9 decimals makes that exactly 0, so rounding noise never decides which
    toolbox an objective needs (a real multiplier difference below 1e-9 has no effect on
    training either).
    """
    if isinstance(value, bool):
        raise FamilyError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise FamilyError(f"{what}: expected a finite number, got {value!r}")
        return Fraction(repr(round(value, DECIMALS)))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except ValueError:
            pass
    raise FamilyError(f"{what}: expected a number, got {value!r}")


@dataclass(frozen=True)
class Lagrangian:
    """α1 I_p(x;z) + α2 I_q(x;z) + Σ_i λ_i D_i (Definition 5, Eq. 8), as data."""

    alpha1: Fraction = Fraction(0)
    alpha2: Fraction = Fraction(0)
    lambdas: Mapping[str, Fraction] = field(default_factory=dict)

    @classmethod
    def from_values(
        cls,
        alpha1: float | str | Fraction = 0,
        alpha2: float | str | Fraction = 0,
        lambdas: Mapping[str, float | str | Fraction] | None = None,
    ) -> Lagrangian:
        """Parse user values; term names are canonicalised and repeated terms summed."""
        merged: dict[str, Fraction] = {}
        for name, value in (lambdas or {}).items():
            term = canonical_term(name)
            if term in INFORMATION_TERMS:
                raise FamilyError(f"{name}: give I_p / I_q as alpha1 / alpha2, not as a λ")
            merged[term] = merged.get(term, Fraction(0)) + as_fraction(value, f"λ of {name}")
        return cls(as_fraction(alpha1, "alpha1"), as_fraction(alpha2, "alpha2"), merged)

    def vector(self) -> Vector:
        total = add(
            scale(mutual_information("p"), self.alpha1), scale(mutual_information("q"), self.alpha2)
        )
        for term, weight in self.lambdas.items():
            total = add(total, scale(term_vector(term), weight))
        return total

    def describe(self) -> str:
        """The Lagrangian in the paper's notation, e.g. '(β-1) I_q + ...' with numbers."""
        parts = [(self.alpha1, "I_p(x;z)"), (self.alpha2, "I_q(x;z)")]
        parts += [(w, t) for t, w in self.lambdas.items()]
        return format_combination((w, t) for w, t in parts if w != 0)


def format_combination(parts: Iterable[tuple[Fraction, str]]) -> str:
    """'- E_q[log p(x|z)] + 4 E_q[log q(z|x)]' from (coefficient, term) pairs."""
    text = ""
    for weight, term in parts:
        sign = "-" if weight < 0 else "+"
        magnitude = abs(weight)
        number = "" if magnitude == 1 else f"{format_number(magnitude)} "
        text += f" {sign} {number}{term}"
    text = text.strip()
    if text.startswith("+ "):
        text = text[2:]
    return text or "0"


def format_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    return f"{as_float:.6g}" if Fraction(repr(as_float)) != value else repr(as_float)


# --------------------------------------------------------------------------- vector helpers


def add(a: Mapping[str, Fraction], b: Mapping[str, Fraction]) -> Vector:
    out = dict(a)
    for key, value in b.items():
        total = out.get(key, Fraction(0)) + value
        if total:
            out[key] = total
        else:
            out.pop(key, None)
    return out


def scale(a: Mapping[str, Fraction], factor: Fraction) -> Vector:
    return {k: v * factor for k, v in a.items() if v * factor}
