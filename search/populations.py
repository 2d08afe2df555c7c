"""Population trials in the search: how many members a trial trains; no Ray.

With `search.population: K` one Tune trial trains K points of the search as one batched model
(`training.trainer.Trainer`). Each member is its own Optuna trial, its own row of
trials.csv and its own point in the dashboard (`search.members` names and decodes them); the
budget `search.num_samples` counts members. The plan resolves `auto` before Ray starts
(`search.plan`), by the rule below, measured with bench/population.py (the figures:
docs/RESULTS.md): on a CPU batching pays for narrow networks and buys nothing for wide,
compute-bound ones, so `auto` batches networks up to `CPU_MAX_HIDDEN` units wide, 16 members
at most; on a GPU (where one wide member leaves the device almost idle) up to
`GPU_MAX_MEMBERS`. Either way K never exceeds the trials each concurrent slot would run
(num_samples / max_concurrent), so every slot gets work, and a space that searches a setting
members must share (`training.members.SHARED`) gets K = 1 under `auto` and a clear error
under an explicit K > 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from experiment.config import ConfigError, Experiment

CPU_MAX_MEMBERS = 16
CPU_MAX_HIDDEN = 256  # wider networks are compute-bound on a CPU: one member per trial
GPU_MAX_MEMBERS = 64


def population_size(
    experiment: Experiment, num_samples: int, *, gpu: bool, keys: Sequence[str] = ()
) -> tuple[int, str]:
    """Members per trial for `search.population` on this device, and a note for people.
    `keys`: the searched dotted keys (members differing in a shared setting train apart)."""
    from training.members import searched_apart  # torch: only when asked

    wanted = experiment.search.population
    reason = None
    apart = searched_apart(keys)
    if apart is not None:
        reason = f"the space searches {apart}, and members that differ in it train apart"
    if wanted != "auto":
        if wanted > 1 and reason is not None:
            raise ConfigError(f"search.population: {wanted} members, but {reason}; use 1")
        return int(wanted), f"search.population: {wanted} members per trial" if wanted > 1 else ""
    if reason is not None:
        return 1, f"search.population auto -> 1: {reason}"
    per_slot = math.ceil(num_samples / experiment.search.max_concurrent)
    if gpu:
        k = min(GPU_MAX_MEMBERS, per_slot)
        return k, f"search.population auto -> {k} members per trial (GPU)"
    if experiment.model.hidden > CPU_MAX_HIDDEN:
        return 1, (
            f"search.population auto -> 1: {experiment.model.hidden}-unit layers are "
            "compute-bound on a CPU, batching them is no faster"
        )
    k = min(CPU_MAX_MEMBERS, per_slot)
    return k, f"search.population auto -> {k} members per trial (CPU)"


def with_population(experiment: Experiment, k: int) -> Experiment:
    """The experiment with `search.population` resolved to `k` (what experiment.yaml keeps)."""
    return replace(experiment, search=replace(experiment.search, population=k))
