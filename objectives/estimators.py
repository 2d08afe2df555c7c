"""One torch estimator per tractable term of the family (paper Definition 7), and `FamilyLoss`.

A compiled objective is a tractable form {term: coefficient}; the loss to minimise is
Σ coefficient · term. `FamilyLoss.forward` runs one shared forward pass, a `ForwardRecord`
(`objectives.record`), and estimates each term from it: likelihood terms (T1) are small pure
functions of the record, divergences (T2 and T3) small modules with their own discriminator or
kernel (`objectives.divergences`). `ESTIMATORS` is the registry: term name -> `Estimator`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objectives.config import ObjectiveConfig
from objectives.divergences import AdversarialDivergence, MaximumMeanDiscrepancy
from objectives.implicit import ADVERSARY_TERM
from objectives.networks import InfoAEModel
from objectives.record import (
    ForwardRecord,
    Variables,
    ep_log_joint,
    ep_log_likelihood,
    ep_log_posterior,
    ep_log_prior,
    eq_log_joint,
    eq_log_likelihood,
    eq_log_posterior,
    eq_log_prior,
    gaussian_kl,
)

# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Estimator:
    """How one tractable term is estimated, and which of p ("p") and q ("q") it moves."""

    groups: frozenset[str]
    likelihood: Callable[[ForwardRecord], Tensor] | None = None  # T1: a pure function
    divergence: Literal["KL(q||p)", "KL(p||q)", "JS", "MMD"] | None = None  # T2/T3
    variables: Variables | None = None  # what the divergence compares

    def build(self, dim: int, model: InfoAEModel, objective: ObjectiveConfig) -> nn.Module:
        """The divergence's module (with its discriminator or kernel) for `dim`-sized samples."""
        assert self.divergence is not None, "likelihood terms have no module"
        if self.divergence == "MMD":
            return MaximumMeanDiscrepancy(dim, objective.kernel)
        return AdversarialDivergence(self.divergence, dim, model.config, objective.js_gradient)


P, Q, PQ, NONE = frozenset("p"), frozenset("q"), frozenset("pq"), frozenset()

ESTIMATORS: dict[str, Estimator] = {
    "E_q[log p(x|z)]": Estimator(PQ, eq_log_likelihood),
    "E_q[log p(z)]": Estimator(Q, eq_log_prior),
    "E_q[log q(z|x)]": Estimator(Q, eq_log_posterior),
    "E_q[log p(x,z)]": Estimator(PQ, eq_log_joint),
    "E_p[log p(x|z)]": Estimator(P, ep_log_likelihood),
    "E_p[log p(x,z)]": Estimator(P, ep_log_joint),
    "E_p[log p(z)]": Estimator(NONE, ep_log_prior),
    "E_p[log q(z|x)]": Estimator(PQ, ep_log_posterior),
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


def term_name(text: str) -> str:
    """The registry's spelling of a term; names are whitespace-insensitive (DESIGN.md)."""
    name = _BY_COMPACT_NAME.get("".join(text.split()))
    if name is None:
        raise ValueError(f"unknown tractable term {text!r}; known terms: {', '.join(ESTIMATORS)}")
    return name


def _coefficients(tractable_form: Mapping[str, float]) -> dict[str, float]:
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
    for name, coefficient in _coefficients(tractable_form).items():
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
    c = _coefficients(tractable_form)
    names = ("E_q[log q(z|x)]", "E_q[log p(x|z)]", "E_q[log p(x,z)]")
    return sum(c.get(name, 0.0) for name in names)


# --------------------------------------------------------------------------- the loss


class StepLosses(NamedTuple):
    losses: dict[str, Tensor]  # "model" (groups p and q) and "disc:<term>": one scalar each
    breakdown: dict[str, Tensor]  # every term's detached estimate, plus "loss" (= model loss)


class FamilyLoss(nn.Module):
    """Σ coefficient · term for a tractable form, one loss per parameter group.

    `state_dict()` holds the discriminators only; the model is the caller's to save.

    `objective.mi_upper_bound` = C (paper Section 4.1, dashed lines of Figure 1; Appendix C.1):
    an explicit upper bound on the mutual information the objective rewards. The rate
    R = E_q KL(q(z|x)||p(z)) ≥ I_q(x;z) is the tractable upper bound on I_q, and when the
    Lagrangian rewards information (α2 < 0, see `information_preference`; or pass α2 as
    `information_weight`), the reward is capped: the model loss gains -α2 · relu(R - C). As
    R = E_q[log q(z|x)] - E_q[log p(z)], past the cap this moves c(E_q[log q(z|x)]) by -α2, so
    the objective acts as its information-neutral member (α2 = 0): β-VAE with β < 1 pulls
    exactly like the ELBO, AAE like ELBO + JS, and nothing pushes the rate up beyond C for the
    reward's sake. With α2 >= 0 there is no reward to cap and C does nothing.
    Appendix C.1 states the cap on -E_q[log p(x|z)] as its (loose) MI estimate; we cap R
    because R is a true upper bound on I_q.
    """

    def __init__(
        self,
        tractable_form: Mapping[str, float],
        model: InfoAEModel,
        objective: ObjectiveConfig,
        x_dim: int,
        z_dim: int,
        *,
        information_weight: float | None = None,
    ) -> None:
        super().__init__()
        assert (x_dim, z_dim) == (model.x_dim, model.z_dim), (
            f"x_dim, z_dim = {x_dim}, {z_dim} but the model has {model.x_dim}, {model.z_dim}"
        )
        self.__dict__["model"] = model  # not a submodule: the caller owns, moves and saves it
        self.objective = objective
        self.information_weight = information_weight
        self.mi_upper_bound = objective.mi_upper_bound
        coefficients = _coefficients(tractable_form)
        self.terms = [name for name in ESTIMATORS if name in coefficients]  # fixed draw order
        dims = {"x": x_dim, "z": z_dim, "x,z": x_dim + z_dim, "x;z": x_dim + z_dim}
        self.divergences = nn.ModuleDict(
            {
                name: ESTIMATORS[name].build(dims[ESTIMATORS[name].variables], model, objective)
                for name in self.terms
                if ESTIMATORS[name].divergence is not None
            }
        )
        self.set_tractable_form(tractable_form)

    def set_tractable_form(self, tractable_form: Mapping[str, float]) -> None:
        """New coefficients for terms built at construction (dual ascent); absent ones are 0."""
        coefficients = _coefficients(tractable_form)
        extra = sorted(set(coefficients) - set(self.terms))
        assert not extra, f"terms {extra} were not in the tractable form FamilyLoss was built with"
        self.coefficients = {name: coefficients.get(name, 0.0) for name in self.terms}
        alpha2 = self.information_weight
        if alpha2 is None:
            alpha2 = information_preference(self.coefficients)
        self.information_reward = max(0.0, -alpha2)  # weight of the cap's penalty

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Groups "p" (decoder), "q" (encoder) and "disc:<term>" for each discriminator."""
        groups = self.model.parameter_groups()
        for name, module in self.divergences.items():
            params = list(module.parameters())
            if params:
                groups[f"disc:{name}"] = params
        return groups

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> StepLosses:
        """One step's losses for a data batch x (B, D); noise is drawn from `generator`."""
        assert x.ndim == 2 and x.shape[1] == self.model.x_dim, (
            f"expected a (B, {self.model.x_dim}) batch, got {tuple(x.shape)}"
        )
        record = ForwardRecord(self.model, x, generator, x_gradient=self.objective.x_gradient)
        return self.step(record)

    def step(self, record: ForwardRecord) -> StepLosses:
        """Estimate every term from one record; the model loss is Σ coefficient · term."""
        breakdown: dict[str, Tensor] = {}
        losses: dict[str, Tensor] = {}
        model_loss = record.x.new_zeros(())
        for name in self.terms:
            estimator = ESTIMATORS[name]
            if estimator.likelihood is not None:
                estimate = surrogate = estimator.likelihood(record)
            else:
                per_sample = estimator.variables in ("x", "x,z") and record.score_function
                out = self.divergences[name](*record.samples(estimator.variables), per_sample)
                estimate, surrogate = out.estimate, out.surrogate
                if out.p_values is not None:  # Bernoulli x_p: the likelihood-ratio gradient
                    baseline = estimator.divergence != "MMD"
                    surrogate = surrogate + record.score_term(out.p_values, baseline)
                if out.discriminator_loss is not None:
                    losses[f"disc:{name}"] = out.discriminator_loss
            breakdown[name] = estimate.detach()
            model_loss = model_loss + self.coefficients[name] * surrogate
        if self.mi_upper_bound is not None and self.information_reward > 0:
            rate = gaussian_kl(record.posterior.mean, record.posterior.logvar).mean()
            penalty = self.information_reward * F.relu(rate - self.mi_upper_bound)
            breakdown["mi_upper_bound_penalty"] = penalty.detach()
            model_loss = model_loss + penalty
        if not model_loss.requires_grad:  # e.g. only constants: keep backward() well defined
            model_loss = model_loss + 0.0 * sum(p.sum() for p in self.model.parameters())
        breakdown["loss"] = model_loss.detach()
        return StepLosses({"model": model_loss, **losses}, breakdown)
