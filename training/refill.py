"""A rolling population's refill: a trainer's slot given to a new member; no Ray here.

A member put into slot k starts as a run of its own would (`training.members.build_member`):
its networks and discriminators initialised under its seed, its own data and noise streams,
fresh Adam moments and step count (`training.optim.MemberAdam.reset`), its multipliers, MI
cap and dual-ascent state in row k. The other members are not touched.
"""

from __future__ import annotations

from typing import Any

from experiment.config import ConfigError, Experiment
from objectives.dual import DualAscent
from objectives.loss import FamilyLoss
from training.members import apart, build_member, loss_form


def refill(trainer: Any, k: int, experiment: Experiment) -> None:
    """Slot k holds a new member from now on, built as a run of its own would be: fresh
    networks and discriminators from its seed, fresh Adam state, its own streams, step 0
    (a rolling population's refill, `search.rolling`). `trainer`: a `training.trainer.Trainer`
    (not imported: the trainer imports this module)."""
    reason = apart(trainer.members[k].experiment, experiment)
    if reason is not None:
        raise ConfigError(f"{reason}: {experiment.name} cannot take a slot of this trainer")
    with trainer.settings():
        member = build_member(experiment, trainer.device, trainer.datasets)
        trainer.model.copy_member_from(k, member.model)
        for name, module in trainer.loss.divergences.items():
            if name in member.discriminators:
                module.discriminator.copy_member_from(k, member.discriminators[name].net)
    trainer.members[k] = member
    for optimizer in trainer.optimizers.values():
        optimizer.reset(k)
    row = FamilyLoss.coefficient_row(loss_form(experiment), trainer.loss.terms)
    trainer.base[k] = row.to(trainer.base)
    trainer.loss.set_cap(k, experiment.objective.mi_upper_bound)
    if trainer.dual is not None:
        lagrangian, dual = experiment.compiled.lagrangian, experiment.objective.dual
        trainer.dual.set_member(k, DualAscent([lagrangian], [dual], trainer.loss.terms))
        trainer.loss.set_coefficients(trainer.dual.coefficients(trainer.base))
    else:
        trainer.loss.set_coefficients(trainer.base)
