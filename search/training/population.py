"""Population trials: K members of one experiment trained at once, as one batched model.

Members share the dataset, the network shape and the tractable terms; they differ in their
multipliers and seeds. Each member keeps a plain `Trainer` as its shell: the shell builds the
member exactly as a single run would (network initialisation under its seed, its data stream,
its sampling generator, its evaluation data) and evaluates it with the same code, after the
member's parameters are copied back into it. Training itself runs on an
`objectives.stacked.StackedModel`: one forward, one backward and one fused Adam for all.

Per member: multipliers (a (K, T) tensor), random streams (its shell's generators, drawn in
the order a plain `FamilyLoss` draws), optimiser state (Adam is per element), divergence
(a member whose loss turns non-finite is frozen and reported `diverged` at that step, the
others go on) and metrics. What the population cannot train yet is refused with
`ConfigError` naming the reason (discriminators, dual ascent, the MI cap, AVB, bf16).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from objectives.config import ConfigError
from objectives.networks import standard_normal
from objectives.stacked import STACKED_TERMS, StackedModel, draw_order, stacked_terms
from search.config import Experiment
from search.training.trainer import Trainer


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
    `run()`; `members[k]` is member k's plain `Trainer` shell."""

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
        self.device = self.members[0].device
        with self.members[0].settings():
            self.model = StackedModel([m.model for m in self.members]).to(self.device)
        self.coefficients = torch.tensor(  # (K, T), float32 as the plain loss multiplies
            [[m.loss.coefficients[t] for t in self.terms] for m in self.members],
            device=self.device,
        )
        mmd = self.members[0].loss.divergences
        name = "MMD(q(z)||p(z))"
        self.kernel = (mmd[name].kernel, mmd[name].scale) if name in mmd else ("imq", 1.0)
        # (without an MMD term the kernel is never read)
        self.draws = draw_order(self.terms)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=first.train.lr, fused=True
        )  # per element: each member's slice follows its own Adam trajectory
        self.batch_size, self.z_dim = first.train.batch_size, first.model.z_dim

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
        """One batched step; returns the members that took it."""
        alive = self.alive
        x = torch.stack([next(m.batches) for m in self.members])  # (K, B, D)
        noise = {
            name: torch.stack([self._noise(m, x) for m in self.members]) for name in self.draws
        }  # (K, B, Z) each, member k's draws from member k's generator in the plain order
        terms = stacked_terms(self.model, x, noise, self.terms, self.kernel)
        loss = x.new_zeros(len(self.members))
        for t, name in enumerate(self.terms):  # the plain loss's order of additions
            loss = loss + self.coefficients[:, t] * terms[name]
        finite = torch.isfinite(loss).tolist()
        for k, member in enumerate(self.members):
            if alive[k] and not finite[k]:
                member.status = "diverged"
                member.diverged = {"step": member.step + 1, "term": _bad_term(terms, k)}
        running = [a and f for a, f in zip(alive, finite, strict=True)]
        mask = torch.tensor(running, device=loss.device)
        self.optimizer.zero_grad(set_to_none=True)
        torch.where(mask, loss, torch.zeros_like(loss)).sum().backward()
        self.optimizer.step()
        took = [k for k, r in enumerate(running) if r]
        for k in took:
            self.members[k].step += 1
        return took

    def _noise(self, member: Trainer, x: Tensor) -> Tensor:
        """ε ~ N(0, I) (B, Z) from the member's sampling generator (as the plain record)."""
        return standard_normal((self.batch_size, self.z_dim), x, member.sampling)

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
        """Train to `train.steps`, evaluating every `eval_every` steps, as `Trainer.run`; each
        item is one metrics dict per member, the last ones with done."""
        t = self.members[0].experiment.train
        done = 0
        while done < t.steps and any(self.alive):
            for m in self.members:
                m._timing = [0.0, 0]
            n = min(t.eval_every - done % t.eval_every, t.steps - done)
            self.train_steps(n)
            done += n
            if done < t.steps and any(self.alive):
                yield self.evaluate()
        for m in self.members:
            if m.status == "running":
                m.status = "ok"
        yield [metrics | {"done": True} for metrics in self.evaluate()]


def _bad_term(terms: dict[str, Tensor], k: int) -> str:
    """Member k's first non-finite term ("loss" if only the weighted sum is), as `Trainer`."""
    for name, value in terms.items():
        if not math.isfinite(float(value[k].detach())):
            return name
    return "loss"
