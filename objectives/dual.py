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

from collections.abc import Mapping, Sequence

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
    """λ_t <- clip(λ_t + lr (D̂_t - ε_t), λ_min, λ_max) for each constraint D_t <= ε_t, for K
    members at once: λ is a (K, C) tensor, one row per member.

    λ starts at the member's own Lagrangian multiplier of the term (or at λ_min when the term
    is not in it, as `distortion` and `rate` never are). D̂_t is the quantity's estimate on the
    step's batch, from the loss's breakdown. The members share which quantities they constrain
    (their loss terms follow from them); ε, the step size and the clip are each member's own.
    """

    def __init__(
        self, lagrangians: Sequence[Lagrangian], duals: Sequence[DualConfig], terms: Sequence[str]
    ) -> None:
        names = [tuple(constraint_form(name)[0] for name in d.slack) for d in duals]
        assert len(set(names)) == 1, f"members must constrain the same quantities, got {names}"
        self.names = list(names[0])
        self.terms = list(terms)  # the loss's terms: the columns of its coefficients
        forms = [constraint_form(name)[1] for name in duals[0].slack]
        missing = sorted({s for f in forms for s in f} - set(self.terms))
        assert not missing, f"the loss does not estimate {missing}"
        self.forms = torch.tensor(  # (C, T): each constrained quantity's form over the terms
            [[f.get(t, 0.0) for t in self.terms] for f in forms], dtype=torch.float64
        )
        self.slack = torch.tensor([list(d.slack.values()) for d in duals], dtype=torch.float64)
        self.lr = torch.tensor([[d.lr] for d in duals], dtype=torch.float64)
        self.low = torch.tensor([[d.lambda_min] for d in duals], dtype=torch.float64)
        self.high = torch.tensor([[d.lambda_max] for d in duals], dtype=torch.float64)
        self.initial = torch.tensor(
            [[float(g.lambdas.get(t, 0)) for t in self.names] for g in lagrangians],
            dtype=torch.float64,
        )
        self.lambdas = torch.minimum(torch.maximum(self.initial, self.low), self.high)

    @staticmethod
    def terms_of(dual: DualConfig) -> set[str]:
        """Every tractable term a constrained quantity's form uses (the loss must estimate
        them all)."""
        return {s for name in dual.slack for s in constraint_form(name)[1]}

    def coefficients(self, base: torch.Tensor) -> torch.Tensor:
        """The (K, T) coefficients at the current λ: base + (λ - λ0) forms."""
        shift = (self.lambdas - self.initial) @ self.forms  # (K, T)
        return base + shift.to(base)

    def estimates(self, breakdown: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """D̂ per member and constraint, (K, C), from the breakdown's (K,) term estimates."""
        columns = torch.stack([breakdown[t].double().cpu() for t in self.terms], -1)  # (K, T)
        return columns @ self.forms.T

    def update(self, breakdown: Mapping[str, torch.Tensor], alive: torch.Tensor) -> None:
        """One ascent step for the members marked `alive` (K,) (a diverged member's λ stays)."""
        step = self.lambdas + self.lr * (self.estimates(breakdown) - self.slack)
        step = torch.minimum(torch.maximum(step, self.low), self.high)
        self.lambdas = torch.where(alive.cpu()[:, None], step, self.lambdas)

    def set_member(self, k: int, other: DualAscent) -> None:
        """Row k becomes `other`'s one member (a refilled slot: its own ε, step, clip, λ0)."""
        assert other.names == self.names, "members must constrain the same quantities"
        for name in ("slack", "lr", "low", "high", "initial", "lambdas"):
            getattr(self, name)[k] = getattr(other, name)[0]

    def member_lambdas(self, k: int) -> dict[str, float]:
        return {t: float(v) for t, v in zip(self.names, self.lambdas[k], strict=True)}
