"""`FamilyLoss`: Σ_t c[k, t] · term[k, t] for K members, one loss per parameter group.

One step: the members' noise is drawn (each from its own generator, in the order its terms
first read it), one `ForwardRecord` is built over (K, B, ·) tensors, and every term of the
registry (`objectives.estimators.ESTIMATORS`) is estimated from it, one (K,) vector each. The
coefficients are a (K, T) tensor: member k's row is its own tractable form, so its parameters
get exactly the gradient of its own objective. Discriminators come back as their own losses
("disc:<term>"); the model loss moves p and q. A plain run is K = 1.

`mi_upper_bound` = C (paper Section 4.1, dashed lines of Figure 1; Appendix C.1), per member:
an explicit upper bound on the mutual information the objective rewards. The rate R =
E_q KL(q(z|x)||p(z)) ≥ I_q(x;z) is the tractable upper bound on I_q, and when the Lagrangian
rewards information (α2 < 0, `objectives.estimators.information_preference`) the reward is
capped: the model loss gains -α2 · relu(R - C). As R = E_q[log q(z|x)] - E_q[log p(z)], past the
cap this moves c(E_q[log q(z|x)]) by -α2, so the objective acts as its information-neutral
member (α2 = 0). With α2 >= 0 there is no reward to cap and C does nothing. Appendix C.1 states
the cap on -E_q[log p(x|z)] as its (loose) MI estimate; we cap R because R is a true upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from objectives.caps import capped_information
from objectives.config import ObjectiveConfig
from objectives.divergences import AdversarialDivergence, MaximumMeanDiscrepancy
from objectives.estimators import ESTIMATORS, INFORMATION_TERMS, coefficients_of
from objectives.networks import Discriminator, InfoAEModel
from objectives.record import ForwardRecord, draw_noise, draw_order
from objectives.stacked import StackedModel

SHARED_SETTINGS = (  # what members' losses must share
    *("kernel", "kernel_bandwidth", "kernel_estimator", "js_gradient", "x_gradient"),
    "mi_upper_bound_on",
)


class StepLosses(NamedTuple):
    losses: dict[str, Tensor]  # "model" (groups p and q) and "disc:<term>": (K,) each
    breakdown: dict[str, Tensor]  # every term's detached estimate (K,), plus "loss" (model)


def loss_terms(forms: Sequence[Mapping[str, float]]) -> list[str]:
    """The terms the members' forms use, in the registry's order (the order of every draw)."""
    used = {name for form in forms for name in coefficients_of(form)}
    return [name for name in ESTIMATORS if name in used]


def sample_dims(x_dim: int, z_dim: int) -> dict[str, int]:
    """The size of one sample of each variable set a divergence compares."""
    return {"x": x_dim, "z": z_dim, "x,z": x_dim + z_dim, "x;z": x_dim + z_dim}


def build_discriminators(terms: Sequence[str], model: InfoAEModel) -> dict[str, Discriminator]:
    """One member's discriminators, one per adversarial term, initialised now from torch's
    global stream (the trainer calls this under the member's seed, after its networks)."""
    dims = sample_dims(model.x_dim, model.z_dim)
    out = {}
    for name in terms:
        estimator = ESTIMATORS[name]
        if estimator.divergence not in (None, "MMD"):
            out[name] = Discriminator(dims[estimator.variables], model.config)
    return out


class FamilyLoss(nn.Module):
    """The members' losses from one record. `state_dict()` holds the discriminators only; the
    model (a `StackedModel`) is the caller's to own, move and save."""

    def __init__(
        self,
        forms: Sequence[Mapping[str, float]],
        model: StackedModel,
        objectives: Sequence[ObjectiveConfig],
        discriminators: Sequence[Mapping[str, Discriminator]],
        data_entropy: float | None = None,  # H(x), for a cap on H(x) - distortion
    ) -> None:
        super().__init__()
        assert len(forms) == len(objectives) == len(discriminators) == len(model), (
            "one form, objective and set of discriminators per member"
        )
        first = objectives[0]
        for key in SHARED_SETTINGS:
            values = {getattr(o, key) for o in objectives}
            if len(values) > 1:
                raise ValueError(f"members must share objective.{key}, got {sorted(values)}")
        self.__dict__["model"] = model  # not a submodule: see the class docstring
        self.x_gradient = first.x_gradient
        self.terms = loss_terms(forms)
        dims = sample_dims(model.x_dim, model.z_dim)
        self.divergences = nn.ModuleDict()
        for name in self.terms:
            estimator = ESTIMATORS[name]
            if estimator.divergence == "MMD":
                self.divergences[name] = MaximumMeanDiscrepancy(
                    dims[estimator.variables],
                    first.kernel,
                    first.kernel_bandwidth,
                    first.kernel_estimator,
                )
            elif estimator.divergence is not None:
                nets = [d[name] for d in discriminators]
                self.divergences[name] = AdversarialDivergence(
                    estimator.divergence, nets, first.js_gradient
                )
        self.cap_on, self.data_entropy = first.mi_upper_bound_on, data_entropy
        reads = [ESTIMATORS[n].draws(model.implicit, self.x_gradient) for n in self.terms]
        if self.cap_on == "distortion" and any(o.mi_upper_bound for o in objectives):
            reads.append(("z_q",))  # the cap reads E_q[log p(x|z)] whatever the terms
        self.draws = draw_order(reads)
        self.noise_dims = {"z_q": model.noise_dim if model.implicit else model.z_dim}
        self.noise_dims |= {"z_p": model.z_dim, "x_p": model.x_dim}
        self.uniform = frozenset({"x_p"} if model.decoder_range is None else ())
        caps = [math.inf if o.mi_upper_bound is None else o.mi_upper_bound for o in objectives]
        capped = any(math.isfinite(c) for c in caps)
        self.register_buffer("caps", torch.tensor(caps) if capped else None, persistent=False)
        rows = [self.coefficient_row(f, self.terms) for f in forms]
        coefficients = torch.stack(rows).reshape(len(forms), -1)
        self.register_buffer("coefficients", coefficients, persistent=False)  # (K, T)
        self.information = [t for t, n in enumerate(self.terms) if n in INFORMATION_TERMS]

    @staticmethod
    def coefficient_row(form: Mapping[str, float], terms: Sequence[str]) -> Tensor:
        """One member's coefficients (T,) in the order of `terms`."""
        coefficients = coefficients_of(form)
        return torch.tensor([coefficients.get(t, 0.0) for t in terms], dtype=torch.float32)

    def set_cap(self, k: int, cap: float | None) -> None:
        """Member k's MI cap (`objective.mi_upper_bound`; None: uncapped)."""
        value = math.inf if cap is None else cap
        if self.caps is None and math.isfinite(value):
            self.caps = torch.full((len(self.model),), math.inf, device=self.coefficients.device)
        if self.caps is not None:
            self.caps[k] = value

    def set_coefficients(self, coefficients: Tensor) -> None:
        """New (K, T) coefficients in the order of `terms` (dual ascent moves them)."""
        self.coefficients = coefficients.to(self.coefficients)

    def information_reward(self) -> Tensor:
        """max(0, -α2) per member (K,): the weight of the MI cap's penalty."""
        alpha2 = self.coefficients[:, self.information].sum(-1)
        return (-alpha2).clamp_min(0.0)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Groups "p" (decoder), "q" (encoder) and "disc:<term>" for each discriminator."""
        groups = self.model.parameter_groups()
        for name, module in self.divergences.items():
            params = list(module.parameters())
            if params:
                groups[f"disc:{name}"] = params
        return groups

    def record(self, x: Tensor, generators: Sequence[torch.Generator]) -> ForwardRecord:
        """The record of a batch x (K, B, D), member k's noise drawn from generators[k]."""
        assert x.ndim == 3 and x.shape[0] == len(generators) == len(self.model), (
            f"expected a ({len(self.model)}, B, D) batch and one generator per member, "
            f"got {tuple(x.shape)} and {len(generators)}"
        )
        noise = draw_noise(self.draws, generators, x, self.noise_dims, self.uniform)
        return ForwardRecord(self.model, x, noise, self.x_gradient)

    def forward(self, x: Tensor, generators: Sequence[torch.Generator]) -> StepLosses:
        """One step's losses for a batch x (K, B, D)."""
        return self.step(self.record(x, generators))

    def step(self, record: ForwardRecord) -> StepLosses:
        """Estimate every term from one record; member k's model loss is Σ_t c[k, t] term[k, t]."""
        breakdown: dict[str, Tensor] = {}
        losses: dict[str, Tensor] = {}
        surrogates = []
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
            surrogates.append(surrogate)
        # Σ_t c[k, t] term[k, t] as one product and one sum: fewer ops than a running sum
        model_loss = (self.coefficients * torch.stack(surrogates, 1)).sum(1)
        if self.caps is not None:
            information = capped_information(record, self.cap_on, self.data_entropy)
            penalty = self.information_reward() * F.relu(information - self.caps)
            breakdown["mi_upper_bound_penalty"] = penalty.detach()
            model_loss = model_loss + penalty
        if not model_loss.requires_grad:  # e.g. only constants: keep backward() well defined
            model_loss = model_loss + 0.0 * sum(p.sum() for p in self.model.parameters())
        breakdown["loss"] = model_loss.detach()
        return StepLosses({"model": model_loss, **losses}, breakdown)

    def discriminator_losses(self, record: ForwardRecord) -> dict[str, Tensor]:
        """Only the discriminators' losses (K,) each, as a discriminator-only step needs them:
        the samples are computed without a graph (the losses see them detached)."""
        games = {
            name: module
            for name, module in self.divergences.items()
            if isinstance(module, AdversarialDivergence)
        }
        with torch.no_grad():
            samples = {n: record.samples(ESTIMATORS[n].variables) for n in games}
        return {f"disc:{n}": d.discriminator_loss(*samples[n]) for n, d in games.items()}
