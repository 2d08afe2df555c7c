"""Dual ascent on chosen multipliers: λ learned under constraints D_t <= ε_t.

Paper Section 4.1: the Lagrangian should be maximised over λ, not fixed. The tractable form is
linear in λ, so moving λ_t changes the loss by (λ_t - λ0_t) times the constrained quantity's
own tractable form.

Only honest quantities can be constrained: those the trainer estimates without a dropped
constant, so that ε is compared with the quantity itself (LagVAE, Zhao et al. 2018):
- `distortion` = -E_q[log p(x|z)] and `rate` = E_x KL(q(z|x)||p(z)), both exact per batch;
- a divergence the trainer estimates directly, as its own tractable form: a marginal KL (density
  ratio), any JS or MMD on a marginal or the joint.
A term the compiler rewrites into likelihood terms (KL(q(x,z)||p(x,z)) = distortion + rate -
H_q(x), KL(q(x|z)||p(x|z)), ...) is known only up to a constant such as the data entropy, which
on MNIST is ~100 nats: ε would be compared with a shifted number and λ would run to a clip.
Such terms, I_p and I_q, and intractable terms are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from objectives.compile import term_form
from objectives.config import ConfigError, DualConfig
from objectives.terms import FamilyError, Lagrangian, canonical_term

# Constrainable quantities that are not Lagrangian terms: name -> tractable form (exact).
QUANTITIES: dict[str, dict[str, float]] = {
    "distortion": {"E_q[log p(x|z)]": -1.0},  # -E_q log p(x|z)
    "rate": {"E_q[log q(z|x)]": 1.0, "E_q[log p(z)]": -1.0},  # E_x KL(q(z|x)||p(z))
}


def constraint_form(name: str) -> tuple[str, dict[str, float]]:
    """(canonical name, exact tractable form) of a constrainable quantity, or ConfigError."""
    key = f"objective.dual.slack.{name}"
    if name in QUANTITIES:
        return name, dict(QUANTITIES[name])
    try:
        term = canonical_term(name)
        form, residual = ({}, {}) if term in ("I_p", "I_q") else term_form(term)
    except FamilyError as error:
        raise ConfigError(f"{key}: {error}") from None
    if term in ("I_p", "I_q"):
        reason = "mutual information has no unbiased estimate to compare with ε"
    elif residual:
        reason = f"it is intractable (residual: {', '.join(residual)})"
    elif dict(form) != {term: 1}:
        reason = (
            "its tractable form ("
            + ", ".join(f"{c} {t}" for t, c in form.items())
            + ") drops a constant (a data entropy), so ε would be compared with a shifted number"
        )
    else:
        return term, {term: 1.0}
    raise ConfigError(
        f"{key}: {reason}; constrain distortion, rate or a divergence the trainer estimates "
        "directly (a marginal KL, a JS or an MMD)"
    )


class DualAscent:
    """λ_t <- clip(λ_t + lr (D̂_t - ε_t), λ_min, λ_max) for each constraint D_t <= ε_t.

    λ starts at the Lagrangian's own multiplier of the term (or at λ_min when the term is not
    in it, as `distortion` and `rate` never are). D̂_t is the quantity's estimate on the step's
    batch, read from the loss's breakdown.
    """

    def __init__(self, lagrangian: Lagrangian, dual: DualConfig):
        self.lr, self.low, self.high = dual.lr, dual.lambda_min, dual.lambda_max
        self.slack: dict[str, float] = {}
        self.forms: dict[str, dict[str, float]] = {}
        self.initial: dict[str, float] = {}
        for name, epsilon in dual.slack.items():
            term, form = constraint_form(name)
            self.slack[term] = float(epsilon)
            self.forms[term] = form
            self.initial[term] = float(lagrangian.lambdas.get(term, 0))
        self.lambdas = {t: min(max(v, self.low), self.high) for t, v in self.initial.items()}

    def terms(self) -> set[str]:
        """Every tractable term a slack term's form uses (the loss must estimate them all)."""
        return {s for form in self.forms.values() for s in form}

    def form(self, base: Mapping[str, float]) -> dict[str, float]:
        """The tractable form at the current λ: base + Σ_t (λ_t - λ0_t) form_t."""
        out = dict(base)
        for term, form in self.forms.items():
            shift = self.lambdas[term] - self.initial[term]
            for s, c in form.items():
                out[s] = out.get(s, 0.0) + shift * c
        return out

    def estimate(self, term: str, breakdown: Mapping[str, torch.Tensor]) -> float:
        return sum(c * float(breakdown[s]) for s, c in self.forms[term].items())

    def update(self, breakdown: Mapping[str, torch.Tensor]) -> None:
        for term, epsilon in self.slack.items():
            value = self.lambdas[term] + self.lr * (self.estimate(term, breakdown) - epsilon)
            self.lambdas[term] = min(max(value, self.low), self.high)
