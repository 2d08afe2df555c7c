"""The one trainer: K members of one experiment trained as one batched model; no Ray here.

A `Trainer` trains a population (docs/ARCHITECTURE.md); a plain run is a population of one.
Members share the data set, the network shape and the loss terms (`training.members.SHARED`)
and differ in their multipliers, seeds, dual-ascent slack and MI cap. Each member is built as a
run of its own would be (`training.members.build_member`); training runs on the stacked model
(`objectives.stacked`): one forward record, one backward, one fused Adam for the model and one
for the discriminators, per element, so each member follows its own trajectory.

Per member: multipliers (a row of the loss's (K, T) coefficients, moved by dual ascent),
random streams, optimiser state, discriminators, divergence (a member whose loss turns
non-finite is frozen and reported `diverged` at that step; the others go on), and metrics.
Discriminators take `train.disc_steps - 1` updates alone, each on a fresh batch, before each
joint step (which updates them once more).

Torch's process-wide settings (threads, TF32, the global seed) are set only while the trainer
works and restored after (`training.runtime`): a process that runs several trainers, as Ray's
reused actors and the tests do, sees no trace of an earlier one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from experiment.config import METRICS, ConfigError, Experiment
from experiment.status import DIVERGED, IDLE, OK, RUNNING
from objectives.dual import DualAscent
from objectives.loss import FamilyLoss, StepLosses
from objectives.stacked import StackedModel
from training import checkpoint
from training.data import StackedBatches
from training.evaluation import evaluate_model
from training.members import Member, apart, build_member, eval_generator, loss_form
from training.mog import MOG_ENTROPY
from training.optim import MemberAdam
from training.refill import refill
from training.runtime import machine_threads, resolve_device, torch_settings
from training.schedule import lr_factor


class Trainer:
    """K members: `train_steps`, `evaluate` (one metrics dict per member), `run()`, and
    `save_checkpoint` / `load_checkpoint`."""

    def __init__(self, experiments: Experiment | Sequence[Experiment], *, threads: int = 0):
        experiments = [experiments] if isinstance(experiments, Experiment) else list(experiments)
        if not experiments:
            raise ConfigError("a trainer needs at least one member")
        for e in experiments[1:]:
            reason = apart(experiments[0], e)
            if reason is not None:
                raise ConfigError(f"{reason}: {e.name} cannot train beside {experiments[0].name}")
        first = experiments[0]
        # the CPUs granted (a Ray trial passes its share), else the file's, else the machine's
        self.threads = threads or first.train.threads or machine_threads()
        try:
            self.device = resolve_device(first.train.device)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        with self.settings():
            datasets: dict[Any, Any] = {}
            self.members = [build_member(e, self.device, datasets) for e in experiments]
            self.model = StackedModel([m.model for m in self.members]).to(self.device)
            forms = [loss_form(e) for e in experiments]
            objectives = [e.objective for e in experiments]
            discriminators = [m.discriminators for m in self.members]
            entropy = MOG_ENTROPY if first.dataset.name == "mog" else None  # H(x) for a cap
            self.loss = FamilyLoss(forms, self.model, objectives, discriminators, entropy)
            self.loss.to(self.device)
        self.base = self.loss.coefficients.clone()  # (K, T) at the members' own multipliers
        self.dual = None
        if first.objective.mode == "lagrangian":
            lagrangians = [e.compiled.lagrangian for e in experiments]
            duals = [e.objective.dual for e in experiments]
            self.dual = DualAscent(lagrangians, duals, self.loss.terms)
            self.loss.set_coefficients(self.dual.coefficients(self.base))
        t = first.train
        # Adam with a step count per member (training.optim: a refilled slot starts afresh)
        self.optimizers = {"model": MemberAdam(list(self.model.parameters()), lr=t.lr)}
        disc_params = list(self.loss.divergences.parameters())
        if disc_params:
            self.optimizers["discriminators"] = MemberAdam(disc_params, lr=t.discriminator_lr)
        self.base_lrs = {"model": t.lr, "discriminators": t.discriminator_lr}
        self.train_config = t
        self.datasets = datasets  # loaded once, for the members a refill brings (training.refill)
        self.batches: StackedBatches | None = None

    def settings(self) -> Any:
        """torch's threads and TF32 for this trainer, restored when the block ends."""
        return torch_settings(self.threads, self.device)

    def alive(self) -> list[bool]:
        return [m.status not in (DIVERGED, IDLE) for m in self.members]

    def replace(self, k: int, experiment: Experiment) -> None:
        """Slot k holds a new member from now on (`training.refill`)."""
        refill(self, k, experiment)
        self.batches = None

    # ----------------------------------------------------------------- training

    def train_steps(self, n: int) -> None:
        """Up to ``n`` steps for every running member; a member whose loss or a term turns
        non-finite stops there (status "diverged"), the others go on."""
        with self.settings():
            start = time.perf_counter()
            taken = [0] * len(self.members)
            alive = self.alive()
            mask = torch.tensor(alive, device=self.device)
            for _ in range(n):
                if not any(alive):
                    break
                self._schedule_learning_rates()
                for _ in range(self.train_config.disc_steps - 1):
                    self._discriminator_step(mask)
                for k in self._step(alive, mask):
                    taken[k] += 1
                if self.alive() != alive:  # a member diverged: mask it from now on
                    alive = self.alive()
                    mask = torch.tensor(alive, device=self.device)
            seconds = time.perf_counter() - start
        for member, steps in zip(self.members, taken, strict=True):
            if steps:
                member.timing[0] += seconds
                member.timing[1] += steps * self.train_config.batch_size

    def _schedule_learning_rates(self) -> None:
        """The rates of the update about to be taken, each member's from its own step (a
        rolling population's members are at different steps)."""
        t = self.train_config
        if t.lr_schedule.kind == "constant":
            return  # the optimisers' rates are the base rates, as built
        factors = [lr_factor(t.lr_schedule, m.step, t.steps) for m in self.members]
        for name, optimizer in self.optimizers.items():
            optimizer.lrs = [self.base_lrs[name] * f for f in factors]

    def _batch(self) -> Tensor:
        if self.batches is None:  # built at the first step after a change of members
            self.batches = StackedBatches([m.batches for m in self.members])
        return next(self.batches)  # (K, B, D)

    def _generators(self) -> list[torch.Generator]:
        return [m.sampling for m in self.members]

    def _step(self, alive: list[bool], mask: Tensor) -> list[int]:
        """One joint step for the members `alive` says (`mask`: the same on the device);
        returns the members that took it."""
        with self._autocast():
            out = self.loss(self._batch(), self._generators())
        losses = list(out.losses.values())
        total = losses[0] if len(losses) == 1 else torch.stack(losses).sum(0)  # (K,)
        if not all(alive):
            total = torch.where(mask, total, torch.zeros_like(total))
        # finite iff every term is (each enters with its coefficient, and 0 · NaN is NaN)
        loss = total.sum()
        if not math.isfinite(float(loss.detach())):
            finite = torch.isfinite(total.detach()).tolist()
            for k, member in enumerate(self.members):
                if alive[k] and not finite[k]:
                    member.status = DIVERGED
                    member.diverged = {"step": member.step + 1, "term": _bad_term(out, k)}
            if not any(self.alive()):
                return []
            mask = torch.tensor(self.alive(), device=self.device)
            loss = torch.where(mask, total, torch.zeros_like(total)).sum()
        for optimizer in self.optimizers.values():
            optimizer.zero_grad()
        loss.backward()  # one graph: no parameter is reached by two groups' losses
        took = [k for k, alive in enumerate(self.alive()) if alive]
        for optimizer in self.optimizers.values():
            optimizer.step(took)
        for k in took:
            self.members[k].step += 1
        if self.dual is not None:
            self.dual.update(out.breakdown, mask)
            self.loss.set_coefficients(self.dual.coefficients(self.base))
        return took

    def _discriminator_step(self, alive: Tensor) -> None:
        """One update of every discriminator alone, on a fresh batch and fresh noise."""
        if "discriminators" not in self.optimizers:
            return
        with self._autocast():
            record = self.loss.record(self._batch(), self._generators())
            total = sum(self.loss.discriminator_losses(record).values())
        optimizer = self.optimizers["discriminators"]
        optimizer.zero_grad()
        torch.where(alive, total, torch.zeros_like(total)).sum().backward()
        optimizer.step([k for k, a in enumerate(alive.tolist()) if a])

    def _autocast(self) -> torch.autocast:
        """bf16 autocast of the forward pass when `train.precision` asks for it (matmuls in
        bf16 on tensor cores; losses, backward and evaluation stay in fp32)."""
        enabled = self.train_config.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # ----------------------------------------------------------------- evaluation

    def evaluate(self, which: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Every metric of docs/TRAINING.md#metrics per member (or of the members `which`
        names, in that order), plus `mi_cap`, `step`, `status`."""
        chosen = range(len(self.members)) if which is None else which
        with self.settings(), torch.no_grad():
            return [self._evaluate(k, self.members[k]) for k in chosen]

    def _evaluate(self, k: int, member: Member) -> dict[str, Any]:
        seconds, samples = member.timing
        metrics: dict[str, Any] = {"step": member.step, "status": member.status}
        if member.status == DIVERGED:
            metrics |= {m: math.nan for m in METRICS} | {"mi_cap": math.nan}
        else:
            self.model.copy_member_into(k, member.model)
            member.model.eval()
            metrics |= evaluate_model(
                member.model,
                member.eval_data,
                member.train_eval_data,
                iw_samples=self.train_config.iw_samples,
                generator=eval_generator(member.experiment.seed, member.step, self.device),
                data_entropy=MOG_ENTROPY if member.dataset.name == "mog" else None,
            )
        metrics["train_samples_per_s"] = samples / seconds if seconds > 0 else math.nan
        if self.dual is not None:
            metrics |= {f"lambda/{t}": v for t, v in self.dual.member_lambdas(k).items()}
        if member.diverged is not None:
            metrics["diverged_step"] = member.diverged["step"]
            metrics["diverged_term"] = member.diverged["term"]
        return metrics

    def run(self) -> Iterator[list[dict[str, Any]]]:
        """Train to `train.steps` from the members' current step (0, or a checkpoint's),
        evaluating every `eval_every` steps; each item is one metrics dict per member, the
        last ones with done."""
        t = self.train_config
        for m in self.members:
            if m.status == OK and m.step < t.steps:  # resumed with more steps to take
                m.status = RUNNING
        while (step := self._running_step()) is not None and step < t.steps:
            for m in self.members:
                m.timing = [0.0, 0]
            self.train_steps(min(t.eval_every - step % t.eval_every, t.steps - step))
            step = self._running_step()
            if step is not None and step < t.steps:
                yield self.evaluate()
        for m in self.members:
            if m.status == RUNNING:
                m.status = OK
        yield [metrics | {"done": True} for metrics in self.evaluate()]

    def _running_step(self) -> int | None:
        """The step of the running members (they step together), None when none runs."""
        steps = [m.step for m in self.members if m.status == RUNNING]
        return max(steps) if steps else None

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, directory: Path) -> Path:
        """Everything a resume needs (`training.checkpoint.save`); returns the file."""
        return checkpoint.save(self, Path(directory))

    def load_checkpoint(self, directory: Path) -> None:
        """Restore `save_checkpoint`'s state into a trainer built from the same experiments;
        `run()` then continues from the members' steps."""
        checkpoint.load(self, Path(directory))


def _bad_term(out: StepLosses, k: int) -> str:
    """Member k's first non-finite term ("loss" if only the losses are)."""
    for name, value in out.breakdown.items():
        if name != "loss" and not math.isfinite(float(value[k])):
            return name
    return "loss"
