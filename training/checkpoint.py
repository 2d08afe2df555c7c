"""A trainer's checkpoint: one file, written whole or not at all; no Ray here.

What a resume needs to continue exactly as an uninterrupted run would: the stacked networks,
the discriminators, the optimisers (moments and each member's step count), the dual-ascent
state, the learning-rate schedule it ran, and each member's progress and streams. A file of
another format, of another member count or of another schedule is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.schedule import check_same_schedule, schedule_state

CHECKPOINT_FILE = "trainer.pt"
CHECKPOINT_FORMAT = 4  # 3: (K, out) biases and (K, in, out) narrow weights; 2: torch Adam's


def save(trainer: Any, directory: Path) -> Path:
    """`trainer`'s state (a `training.trainer.Trainer`, not imported: it imports this module)
    in `directory`, written to a temporary file and moved into place."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": trainer.model.state_dict(),
        "divergences": trainer.loss.state_dict(),
        "optimizers": {g: o.state_dict() for g, o in trainer.optimizers.items()},
        "lambdas": trainer.dual.lambdas.clone() if trainer.dual is not None else None,
        "lr_schedule": schedule_state(trainer.train_config),
        "members": [m.state_dict() for m in trainer.members],
        "experiments": [m.experiment.to_dict() for m in trainer.members],
    }
    path = directory / CHECKPOINT_FILE
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    partial.replace(path)
    return path


def load(trainer: Any, directory: Path) -> None:
    """Restore `save`'s state into a trainer built from the same experiments."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # on the CPU: generator states must stay there; load_state_dict moves the rest
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is a checkpoint of format {state.get('format', 1)}, this trainer reads "
            f"format {CHECKPOINT_FORMAT}: resume it with the version that wrote it"
        )
    if len(state["members"]) != len(trainer.members):
        raise ValueError(
            f"{path} holds {len(state['members'])} members, this trainer has {len(trainer.members)}"
        )
    check_same_schedule(state.get("lr_schedule"), schedule_state(trainer.train_config), path)
    trainer.model.load_state_dict(state["model"])
    trainer.loss.load_state_dict(state["divergences"])
    for group, optimizer in trainer.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][group])
    for member, saved in zip(trainer.members, state["members"], strict=True):
        member.load_state_dict(saved)
    if trainer.dual is not None:
        trainer.dual.lambdas = state["lambdas"].clone()
        trainer.loss.set_coefficients(trainer.dual.coefficients(trainer.base))
