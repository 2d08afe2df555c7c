"""A population's checkpoint: one file holding everything a resume needs to go on exactly.

The stacked networks (model and discriminators), each optimiser's state (Adam per element:
every member's moments and step counts), and per member its step, status, divergence record,
data stream (`BatchStream.state_dict`) and sampling generator. Written to a temporary file and
moved into place, as `Trainer.save_checkpoint` does: a crash never leaves half a checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "population.pt"


def save_population(population: Any, directory: Path) -> Path:
    """Write `population` (a `training.population.Population`) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "model": population.model.state_dict(),
        "divergences": population.divergences.state_dict(),
        "optimizers": {g: o.state_dict() for g, o in population.optimizers.items()},
        "members": [_member_state(m) for m in population.members],
    }
    path = directory / CHECKPOINT_FILE
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    partial.replace(path)  # never leave a half-written checkpoint behind
    return path


def load_population(population: Any, directory: Path) -> None:
    """Restore `save_population`'s file into a population built from the same experiments."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no population checkpoint at {path}")
    # on the CPU: generator states must stay there; load_state_dict moves the rest
    state = torch.load(path, map_location="cpu", weights_only=True)
    members = state["members"]
    if len(members) != len(population.members):
        raise ValueError(
            f"{path} holds {len(members)} members, this population has {len(population.members)}"
        )
    population.model.load_state_dict(state["model"])
    population.divergences.load_state_dict(state["divergences"])
    for group, optimizer in population.optimizers.items():
        optimizer.load_state_dict(state["optimizers"][group])
    for member, saved in zip(population.members, members, strict=True):
        member.step, member.status = saved["step"], saved["status"]
        member.diverged = saved["diverged"]
        member.batches.load_state_dict(saved["batches"])
        member.sampling.set_state(saved["sampling"])


def _member_state(member: Any) -> dict[str, Any]:
    return {
        "step": member.step,
        "status": member.status,
        "diverged": member.diverged,
        "batches": member.batches.state_dict(),
        "sampling": member.sampling.get_state(),
    }
