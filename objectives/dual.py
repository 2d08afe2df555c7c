"""Dual ascent on chosen multipliers: λ learned under constraints D_t <= ε_t.

Paper Section 4.1: the Lagrangian should be maximised over λ, not fixed. The tractable form is
linear in λ, so moving λ_t changes the loss by (λ_t - λ0_t) times the term's own tractable form.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from objectives.compile import term_form
from objectives.config import ConfigError, DualConfig
from objectives.terms import FamilyError, Lagrangian, canonical_term


class DualAscent:
    """λ_t <- clip(λ_t + lr (D̂_t - ε_t), λ_min, λ_max) for each constraint D_t <= ε_t.

    λ starts at the Lagrangian's own multiplier of the term (or at λ_min when the term is not
    in it). Only terms whose own tractable form is tractable can move; D̂_t is the term's
    estimate in the step's breakdown, or its tractable form evaluated there (for a term the
    compiler rewrites into likelihood terms, e.g. a joint KL, that is D_t up to a constant).
    """

    def __init__(self, lagrangian: Lagrangian, dual: DualConfig):
        self.lr, self.low, self.high = dual.lr, dual.lambda_min, dual.lambda_max
        self.slack: dict[str, float] = {}
        self.forms: dict[str, dict[str, float]] = {}
        self.initial: dict[str, float] = {}
        for name, epsilon in dual.slack.items():
            try:
                term = canonical_term(name)
                form, residual = term_form(term)
            except FamilyError as error:
                raise ConfigError(f"objective.dual.slack.{name}: {error}") from None
            if term in ("I_p", "I_q") or residual:
                raise ConfigError(
                    f"objective.dual.slack.{name}: only a divergence whose own tractable form "
                    "exists (a marginal or joint divergence, for example) can be adapted by dual "
                    f"ascent; residual: {', '.join(residual) or name}"
                )
            self.slack[term] = float(epsilon)
            self.forms[term] = {t: float(c) for t, c in form.items()}
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
        if term in breakdown:
            return float(breakdown[term])
        return sum(c * float(breakdown[s]) for s, c in self.forms[term].items())

    def update(self, breakdown: Mapping[str, torch.Tensor]) -> None:
        for term, epsilon in self.slack.items():
            value = self.lambdas[term] + self.lr * (self.estimate(term, breakdown) - epsilon)
            self.lambdas[term] = min(max(value, self.low), self.high)
