"""Population trials: K members of one experiment trained at once, as one batched model.

Members share the dataset, the network shape and the tractable terms; they differ in their
multipliers and seeds. Each member keeps a plain `Trainer` as its shell: the shell builds the
member exactly as a single run would (network and discriminator initialisation under its
seed, its data stream, its sampling generator, its evaluation data) and evaluates it with the
same code, after the member's parameters are copied back into it. Training itself runs on an
`objectives.stacked.StackedModel` (and a `StackedAdversarial` per discriminator): one forward,
one backward and one fused Adam for all.

Per member: multipliers (a (K, T) tensor), random streams (its shell's generators, drawn in
the order a plain `FamilyLoss` draws), optimiser state (Adam is per element), divergence
(a member whose loss turns non-finite is frozen and reported `diverged` at that step, the
others go on) and metrics. Discriminators train as in `Trainer`: `train.disc_steps - 1`
discriminator-only steps on fresh batches before each joint step, at `train.discriminator_lr`.
What the population cannot train is refused with `ConfigError` naming the reason (dual ascent,
the MI cap, AVB, bf16).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from experiment.config import Experiment
from objectives.config import ConfigError
from objectives.stacked import STACKED_TERMS, StackedModel, StackedRecord, draw_order
from objectives.stacked_disc import (
    discriminator_losses,
    divergence_settings,
    stacked_divergences,
    stacked_step,
)
from training.population_state import load_population, save_population
from training.trainer import Trainer


def population_refusal(experiment: Experiment, terms: Sequence[str]) -> str | None:
    """Why the population cannot train `experiment` (with tractable `terms`), else None."""
    unsupported = [t for t in terms if t not in STACKED_TERMS]
    if unsupported:
        return f"the population does not support the term {unsupported[0]} yet"
    if experiment.objective.mode == "lagrangian":
        return "the population does not support objective.mode=lagrangian (dual ascent) yet"
    if experiment.objective.mi_upper_bound is not None:
        return "the population does not support objective.mi_upper_bound yet"
    if experiment.model.encoder == "implicit":
        return "the population does not support model.encoder=implicit yet"
    if experiment.train.precision == "bf16":
        return "the population does not support train.precision=bf16 yet"
    return None


class Population:
    """K members trained together: `train_steps`, `evaluate` (one metrics dict per member),
    `run()`, `save_checkpoint` / `load_checkpoint`; `members[k]` is member k's plain `Trainer`
    shell."""

    def __init__(self, experiments: Sequence[Experiment], *, threads: int | None = None):
        if not experiments:
            raise ConfigError("a population needs at least one member")
        first = experiments[0]
        for e in experiments[1:]:
            for section in ("dataset", "model", "train"):
                if getattr(e, section) != getattr(first, section):
                    raise ConfigError(f"population members differ in {section}: {e.name}")
        self.members = [Trainer(e, threads=threads) for e in experiments]
        self.terms = list(self.members[0].loss.terms)
        if any(m.loss.terms != self.terms for m in self.members):
            raise ConfigError("population members must share their tractable terms")
        refusal = population_refusal(first, self.terms)
        if refusal is not None:
            raise ConfigError(refusal)
        settings = divergence_settings(self.members[0].loss)
        for m in self.members[1:]:
            if divergence_settings(m.loss) != settings:
                raise ConfigError(
                    "population members must share their divergences' settings "
                    f"(objective.kernel, js_gradient, x_gradient): {m.experiment.name}"
                )
        self.device = self.members[0].device
        with self.members[0].settings():
            self.model = StackedModel([m.model for m in self.members]).to(self.device)
            self.divergences = stacked_divergences([m.loss for m in self.members])
            self.divergences.to(self.device)
        self.coefficients = torch.tensor(  # (K, T), float32 as the plain loss multiplies
            [[m.loss.coefficients[t] for t in self.terms] for m in self.members],
            device=self.device,
        )
        self.draws = draw_order(self.terms, first.objective.x_gradient)
        t = first.train
        # per element: each member's slice follows its own Adam trajectory, as in `Trainer`
        self.optimizers = {"model": torch.optim.Adam(self.model.parameters(), lr=t.lr, fused=True)}
        disc_params = list(self.divergences.parameters())
        if disc_params:
            self.optimizers["discriminators"] = torch.optim.Adam(
                disc_params, lr=t.discriminator_lr, fused=True
            )
        self.x_gradient = first.objective.x_gradient
        self.batch_size, self.z_dim = t.batch_size, first.model.z_dim

    @property
    def alive(self) -> list[bool]:
        return [m.status != "diverged" for m in self.members]

    # ----------------------------------------------------------------- training

    def train_steps(self, n: int) -> None:
        """Up to ``n`` steps for every running member; a member whose loss turns non-finite
        is frozen (status "diverged", as `Trainer` reports it), the others go on."""
        with self.members[0].settings():
            start = time.perf_counter()
            taken = [0] * len(self.members)
            for _ in range(n):
                if not any(self.alive):
                    break
                for k in self._step():
                    taken[k] += 1
            seconds = time.perf_counter() - start
        for member, steps in zip(self.members, taken, strict=True):
            member._timing[0] += seconds
            member._timing[1] += steps * self.batch_size

    def _step(self) -> list[int]:
        """Discriminator-only steps, then one joint step; returns the members that took it."""
        alive = self.alive
        mask = torch.tensor(alive, device=self.device)
        if "discriminators" in self.optimizers:
            for _ in range(self.members[0].experiment.train.disc_steps - 1):
                self._discriminator_step(mask)
        out = stacked_step(self._record(), self.divergences, self.terms, self.coefficients)
        total = out.model  # what `Trainer` checks: the sum of the model's and discriminators'
        for loss in out.discriminators.values():
            total = total + loss
        finite = torch.isfinite(total.detach())
        if not bool(finite[mask].all()):
            for k in (~finite & mask).nonzero().flatten().tolist():
                member = self.members[k]
                member.status = "diverged"
                member.diverged = {"step": member.step + 1, "term": _bad_term(out.estimates, k)}
            mask = mask & finite
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        if total.requires_grad:  # one backward: no parameter is reached by two groups' losses
            torch.where(mask, total, torch.zeros_like(total)).sum().backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
        took = [k for k, a in enumerate(alive) if a and self.members[k].status != "diverged"]
        for k in took:
            self.members[k].step += 1
        return took

    def _discriminator_step(self, mask: Tensor) -> None:
        """One update of every discriminator alone, on a fresh batch (`Trainer`'s order)."""
        losses = discriminator_losses(self._record(), self.divergences, self.terms)
        optimizer = self.optimizers["discriminators"]
        optimizer.zero_grad(set_to_none=True)
        total = sum(losses.values())
        torch.where(mask, total, torch.zeros_like(total)).sum().backward()
        optimizer.step()

    def _record(self) -> StackedRecord:
        """Each member's next batch and its noise, drawn from its own streams in the order a
        plain record draws (`draw_order`): z ~ N(0, I); x ~ p(x|z)'s noise, N(0, I) for a
        Gaussian decoder and U(0, 1) for a Bernoulli one (as `objectives.networks` draws)."""
        x = torch.stack([next(m.batches) for m in self.members])  # (K, B, D)
        noise = {}
        for name in self.draws:
            dim = x.shape[-1] if name == "x_p" else self.z_dim
            buffer = x.new_empty((len(self.members), self.batch_size, dim))
            uniform = name == "x_p" and self.model.decoder_range is None
            for k, member in enumerate(self.members):
                if uniform:
                    buffer[k].uniform_(generator=member.sampling)
                else:
                    buffer[k].normal_(generator=member.sampling)
            noise[name] = buffer
        return StackedRecord(self.model, x, noise, self.x_gradient)

    # ----------------------------------------------------------------- evaluation

    def evaluate(self) -> list[dict[str, Any]]:
        """Each member's metrics, by the plain `Trainer.evaluate` on its copied parameters."""
        out = []
        for k, member in enumerate(self.members):
            if member.status != "diverged":
                self.model.copy_member_into(k, member.model)
            out.append(member.evaluate())
        return out

    def run(self) -> Iterator[list[dict[str, Any]]]:
        """Train to `train.steps` from the members' current step (0, or a checkpoint's),
        evaluating every `eval_every` steps, as `Trainer.run`; each item is one metrics dict
        per member, the last ones with done."""
        t = self.members[0].experiment.train
        for m in self.members:
            if m.status == "ok" and m.step < t.steps:  # resumed with more steps to take
                m.status = "running"
        while (step := self._running_step()) is not None and step < t.steps:
            for m in self.members:
                m._timing = [0.0, 0]
            self.train_steps(min(t.eval_every - step % t.eval_every, t.steps - step))
            step = self._running_step()
            if step is not None and step < t.steps:
                yield self.evaluate()
        for m in self.members:
            if m.status == "running":
                m.status = "ok"
        yield [metrics | {"done": True} for metrics in self.evaluate()]

    def _running_step(self) -> int | None:
        """The step of the running members (they step together), None when none runs."""
        steps = [m.step for m in self.members if m.status == "running"]
        return max(steps) if steps else None

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, directory: Path) -> Path:
        """Everything a resume needs to continue exactly as an uninterrupted run would: the
        stacked networks, the optimisers' states, and each member's step, status and streams."""
        return save_population(self, Path(directory))

    def load_checkpoint(self, directory: Path) -> None:
        """Restore `save_checkpoint`'s state into this population (built from the same
        experiments); `run()` then continues from the members' steps."""
        load_population(self, Path(directory))
        for k, member in enumerate(self.members):
            if member.status != "diverged":
                self.model.copy_member_into(k, member.model)


def _bad_term(estimates: dict[str, Tensor], k: int) -> str:
    """Member k's first non-finite term ("loss" if only the losses are), as `Trainer`."""
    for name, value in estimates.items():
        if not math.isfinite(float(value[k])):
            return name
    return "loss"
