"""Population trials in the search: how many members a trial trains, and their names; no Ray.

With `search.population: K` one Tune trial trains K points of the search as one batched model
(`training.population.Population`). Each member is its own Optuna trial, its own row of
trials.csv (trial id `<tune trial id>#<member>`) and its own point in the dashboard; the
budget `search.num_samples` counts members. `auto` picks K by the rule below, measured with
bench/population.py (K = 16 members against 16 sequential runs, training steps, 1 thread):

    CPU, 2 cores (this project's CI machine): 2x64 InfoVAE 3.9-5x, beta-VAE 5.6x;
    2x1024: 0.72x (compute-bound: batching buys nothing on a CPU).

So on a CPU `auto` batches networks up to `CPU_MAX_HIDDEN` units wide, 16 members at most; on
a GPU (where a 2x1024 member leaves the device almost idle) up to `GPU_MAX_MEMBERS`. Either
way K never exceeds the trials each concurrent slot would run (num_samples / max_concurrent),
so every slot gets work, and an experiment the population cannot train (see
`population_refusal`) gets K = 1 under `auto` and a clear error under an explicit K > 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from experiment.config import METRICS, ConfigError, Experiment

CPU_MAX_MEMBERS = 16
CPU_MAX_HIDDEN = 256  # wider networks are compute-bound on a CPU: one member per trial
GPU_MAX_MEMBERS = 64
MEMBERS = "members"  # the config key of a population trial: one point per member
MEMBER_SEPARATOR = "#"


def member_key(trial_id: str, member: int | None) -> str:
    """The name of one member: the Tune trial id, `#member` for a population's members."""
    return trial_id if member is None else f"{trial_id}{MEMBER_SEPARATOR}{member}"


def unbatchable(experiment: Experiment) -> str | None:
    """Why `experiment` cannot train as a population (its reason), else None."""
    from training.population import population_refusal  # torch: only when asked

    terms = list(experiment.compiled.coefficients())
    return population_refusal(experiment, terms)


def population_size(
    experiment: Experiment, num_samples: int, *, gpu: bool, keys: Sequence[str] = ()
) -> tuple[int, str]:
    """Members per trial for `search.population` on this device, and a note for people.
    `keys`: the searched dotted keys (members differing outside `objective` train apart)."""
    wanted = experiment.search.population
    reason = unbatchable(experiment)
    apart = [k for k in keys if not k.startswith("objective.")]
    if reason is None and apart:
        reason = f"the space searches {apart[0]}, and members that differ in it train apart"
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


def member_records(record: Mapping[str, Any]) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """(member, its record) for each member of a population trial's result; (None, record)
    for a point's. A member's record carries the trial's shared fields (time, placement).
    A population reports `members` as {"0": metrics, "1": ...}: Tune's loggers flatten that
    into one scalar per member and metric (`members/0/nll`), where a list would be refused;
    Tune hands searchers the flattened form, which is read back here too."""
    record = _nested(record)
    if MEMBERS not in record:
        yield None, dict(record)
        return
    shared = {k: v for k, v in record.items() if k not in (MEMBERS, *METRICS, "status", "step")}
    for k, member in sorted(record[MEMBERS].items(), key=lambda item: int(item[0])):
        yield int(k), {**shared, **member}


def _nested(record: Mapping[str, Any]) -> dict[str, Any]:
    """`members/0/nll` keys (a flattened result) back into `members: {"0": {"nll": ...}}`."""
    prefix = f"{MEMBERS}/"
    flat = [key for key in record if key.startswith(prefix)]
    if not flat:
        return dict(record)
    out = {k: v for k, v in record.items() if not k.startswith(prefix)}
    members: dict[str, dict[str, Any]] = {}
    for key in flat:
        member, _, name = key[len(prefix) :].partition("/")
        members.setdefault(member, {})[name] = record[key]
    return out | {MEMBERS: members}
