"""Learning-rate schedules (`train.lr_schedule`): a pure function of the update's index.

The factor multiplies `train.lr` (the model's Adam) and `train.discriminator_lr` (each
discriminator's) for the update with 0-based index `step`, so a resumed run recomputes exactly
the rates an uninterrupted one used, and the checkpoint only needs to say which schedule it
ran (`schedule_state`). Kinds:

- `constant`: 1.
- `step`: 1 before the first milestone, then `factors[i]` from `milestones[i]` on. Zhao et
  al.'s code for the paper (github ShengjiaZhao/Lagrangian, `mmd_vae.py`) runs Adam at 1e-3
  for updates 0-9,999, 1e-4 to 99,999 and 1e-5 to 500,000: milestones [10000, 100000],
  factors [0.1, 0.01].
- `cosine`: min + (1 - min) · (1 + cos(π t / T)) / 2 for t = min(step, T), T = `steps`
  (none: train.steps) (Loshchilov & Hutter 2017, without restarts).

Members of a population share the schedule (the whole `train` section is shared,
`training.members.SHARED`): their stacked parameters sit in one Adam parameter group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiment.config import LrScheduleConfig, TrainConfig
from experiment.typed_yaml import plain


def horizon(schedule: LrScheduleConfig, total_steps: int) -> int:
    """T of a cosine schedule: its own `steps`, else the run's."""
    return schedule.steps if schedule.steps is not None else total_steps


def lr_factor(schedule: LrScheduleConfig, step: int, total_steps: int) -> float:
    """The factor on the base rates for the update with 0-based index `step`."""
    if schedule.kind == "step":
        factor = 1.0
        for milestone, value in zip(schedule.milestones, schedule.factors, strict=True):
            if step >= milestone:
                factor = value
        return factor
    if schedule.kind == "cosine":
        t = horizon(schedule, total_steps)
        low = schedule.min_factor
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * min(step, t) / t))
    return 1.0


def schedule_state(train: TrainConfig) -> dict[str, Any]:
    """What a checkpoint records of the schedule: the config, a cosine's horizon resolved."""
    state = plain(train.lr_schedule)
    if train.lr_schedule.kind == "cosine":
        state["steps"] = horizon(train.lr_schedule, train.steps)
    return state


def check_same_schedule(
    saved: Mapping[str, Any] | None, current: Mapping[str, Any], path: Path
) -> None:
    """A resume under another schedule would change rates the run already used: refused in one
    line (a checkpoint from before schedules existed ran the constant one)."""
    saved = plain(LrScheduleConfig()) if saved is None else dict(saved)
    if saved != dict(current):
        raise ValueError(
            f"{path} was trained with train.lr_schedule {saved}, this run has {dict(current)} "
            "(to resume a cosine with more steps, keep its train.lr_schedule.steps)"
        )
