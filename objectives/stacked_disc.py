"""The population's divergences, and `FamilyLoss.step` for K members (`stacked_step`).

Each adversarial term (KL by density ratio, JS by the GAN game; on z, x or (x, z)) gets one
`StackedAdversarial`: the members' own discriminators stacked on the member axis (member k's
initialisation, its own parameters and, in the caller's optimiser, its own Adam state), with
the estimates of `objectives.divergences` computed per member. MMD has no parameters: the
module of `objectives.divergences` takes the (K, B, ·) samples as they are (a batch of K).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from objectives.divergences import (
    AdversarialDivergence,
    DivergenceOutput,
    MaximumMeanDiscrepancy,
    adversarial_estimate,
    adversarial_p_values,
    discriminator_bce,
)
from objectives.estimators import ESTIMATORS, FamilyLoss
from objectives.stacked import LIKELIHOODS, StackedMLP, StackedRecord


class StackedAdversarial(nn.Module):
    """K members' `AdversarialDivergence`s of one kind as one module on (K, B, ·) samples."""

    def __init__(self, divergences: Sequence[AdversarialDivergence]) -> None:
        super().__init__()
        self.kind, self.js_gradient = divergences[0].kind, divergences[0].js_gradient
        self.discriminator = StackedMLP([d.discriminator.net for d in divergences])

    def logits(self, v: Tensor, frozen: bool = False) -> Tensor:
        """(K, B) logits; `frozen`: gradient to v only (`AdversarialDivergence.frozen_logits`)."""
        return self.discriminator(v, frozen).squeeze(-1)

    def discriminator_loss(self, q_samples: Tensor, p_samples: Tensor) -> Tensor:
        """Each member's logistic loss q -> 1, p -> 0 on detached samples, (K,)."""
        logits_q = self.logits(q_samples.detach())
        logits_p = self.logits(p_samples.detach())
        bce_q, bce_p = discriminator_bce(logits_q, logits_p)
        return bce_q + bce_p

    def forward(
        self, q_samples: Tensor, p_samples: Tensor, per_sample: bool = False
    ) -> DivergenceOutput:
        r_q, r_p = self.logits(q_samples, True), self.logits(p_samples, True)  # (K, B) each
        estimate, surrogate = adversarial_estimate(self.kind, self.js_gradient, r_q, r_p)
        p_values = adversarial_p_values(self.kind, self.js_gradient, r_p) if per_sample else None
        disc_loss = self.discriminator_loss(q_samples, p_samples)
        return DivergenceOutput(estimate, surrogate, disc_loss, p_values)


def divergence_settings(loss: FamilyLoss) -> dict[str, Any]:
    """What a population's members must share about their divergences: per term, the kind and
    JS gradient, or the kernel and its scale; and how x ~ p(x|z) carries gradient."""
    out: dict[str, Any] = {"x_gradient": loss.objective.x_gradient}
    for name, module in loss.divergences.items():
        if isinstance(module, MaximumMeanDiscrepancy):
            out[name] = ("MMD", module.kernel, module.scale)
        else:
            out[name] = (module.kind, module.js_gradient)
    return out


def stacked_divergences(losses: Sequence[FamilyLoss]) -> nn.ModuleDict:
    """One module per divergence term of the members' (shared) form."""
    out = nn.ModuleDict()
    for name, module in losses[0].divergences.items():
        if isinstance(module, MaximumMeanDiscrepancy):
            out[name] = module  # no parameters: its settings are shared (divergence_settings)
        else:
            out[name] = StackedAdversarial([loss.divergences[name] for loss in losses])
    return out


class StackedLosses(NamedTuple):
    model: Tensor  # (K,): each member's model loss Σ_t c[k, t] · surrogate[k, t]
    discriminators: dict[str, Tensor]  # term -> (K,): each member's discriminator loss
    estimates: dict[str, Tensor]  # term -> (K,): each member's detached estimate


def stacked_step(
    record: StackedRecord,
    divergences: Mapping[str, nn.Module],
    terms: Sequence[str],
    coefficients: Tensor,
) -> StackedLosses:
    """`FamilyLoss.step` per member: every term's estimate from one record, in the order of
    `terms`; `coefficients` (K, T) in that order. The model loss sums the terms in the plain
    order, so each member's loss is the plain loss's number."""
    model_loss = record.x.new_zeros(len(record.x))
    discriminators: dict[str, Tensor] = {}
    estimates: dict[str, Tensor] = {}
    for t, name in enumerate(terms):
        estimator = ESTIMATORS[name]
        if estimator.divergence is None:
            estimate = surrogate = LIKELIHOODS[name](record)
        else:
            per_sample = estimator.variables in ("x", "x,z") and record.score_function
            out = divergences[name](*record.samples(estimator.variables), per_sample)
            estimate, surrogate = out.estimate, out.surrogate
            if out.p_values is not None:  # Bernoulli x_p: the likelihood-ratio gradient
                score = record.score_term(out.p_values, estimator.divergence != "MMD")
                surrogate = surrogate + score
            if out.discriminator_loss is not None:
                discriminators[name] = out.discriminator_loss
        estimates[name] = estimate.detach()
        model_loss = model_loss + coefficients[:, t] * surrogate
    return StackedLosses(model_loss, discriminators, estimates)


def discriminator_losses(
    record: StackedRecord, divergences: Mapping[str, nn.Module], terms: Sequence[str]
) -> dict[str, Tensor]:
    """Only the discriminators' losses (K,) each, as a discriminator-only step needs them: the
    samples (computed without a graph: the losses see them detached), not the model's terms."""
    games = {n: divergences[n] for n in terms if n in divergences}
    games = {n: d for n, d in games.items() if isinstance(d, StackedAdversarial)}
    with torch.no_grad():
        samples = {n: record.samples(ESTIMATORS[n].variables) for n in games}
    return {n: d.discriminator_loss(*samples[n]) for n, d in games.items()}
