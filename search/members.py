"""A trial's result as its members, encoded and decoded in this one place; no Ray.

A population trial (config `{"members": [point, ...]}`) trains several points of the search
at once; each point is a member with a name of its own, `member_key(trial_id, k)` =
`<tune trial id>#<k>`: its Optuna trial, its trials.csv row, its curve. A point's trial is
the member `None`, named by its trial id alone.

The result a population trial reports is built by `population_result`: the members as
`{"members": {"0": metrics, "1": ...}}` (string keys: Tune's loggers flatten a mapping into
one scalar per member and metric, `members/0/nll`, where a list would be refused) and, as the
trial's own top-level metrics, those of its best member so far by the search's first
objective (`best_member`: its number, `best_config`: its point, `status`: its status), so
that Ray's own tools (`ResultGrid.get_best_result`, `ExperimentAnalysis.get_best_trial`,
`get_dataframe(filter_metric=...)`) read a population trial as its best configuration: never
NaN once a member has a finite value. "So far" for a rolling trial is over every member it
has ended, remembered in its checkpoint (`search.rolling`); a fixed population reports all
of its members every time. Every member's own row is still its own (trials.csv). Tune hands
searchers that flattened form and writes the nested one to result.json; `decode` reads both,
for a point's result too, so the searcher, trials.csv and the analysis see one list of
`Member`s (the flow of one search: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from experiment.config import METRICS
from experiment.status import POPULATION, final_status

MEMBERS = "members"  # the config and result key of a population trial
SLOTS = "slots"  # the config key of a rolling population trial: members it trains at once
SEPARATOR = "#"  # between the Tune trial id and the member's index in a member's key
_OWN = ("status", "step")  # a member's own fields, never taken from the trial's result
BEST = ("best_member", "best_config")  # the trial's summary of its best member: not shared


@dataclass(frozen=True)
class Member:
    """One member's part of a trial's result."""

    index: int | None  # its place in the population trial; None: a point's trial
    metrics: dict[str, Any]  # its metrics and fields, with the trial's shared ones (time, node)
    status: str  # as reported (`running` while it trains); `final` makes it the ended one


def member_key(trial_id: str, member: int | None) -> str:
    """The name of one member: the Tune trial id, `#member` for a population's members."""
    return trial_id if member is None else f"{trial_id}{SEPARATOR}{member}"


def parse_key(key: str) -> tuple[str, int | None]:
    """`member_key`'s inverse: (Tune trial id, member index or None)."""
    trial_id, separator, member = key.rpartition(SEPARATOR)
    return (trial_id, int(member)) if separator and member.isdigit() else (key, None)


def point_of(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The point a rolling trial's member trains, from its metrics (its dotted keys: no metric
    name has a dot)."""
    return {k: v for k, v in metrics.items() if "." in k and isinstance(v, int | float)}


def population_result(
    members: Mapping[int, Mapping[str, Any]],
    done: bool,
    extra: Mapping[str, Any],
    rank: tuple[str, str] = ("nll", "min"),
    best: tuple[int, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The result a population trial reports: members' latest metrics under `members`, by
    member number (all of a fixed population; a rolling one's reports only those training or
    just ended), as its own metrics those of the best of them and of `best` (a member reported
    earlier) by `rank` (metric, mode) (NaN while none has a finite value), the furthest
    member's step, and `extra`."""
    step = max((int(m.get("step", 0)) for m in members.values()), default=0)
    report = {str(k): dict(m) for k, m in sorted(members.items())}
    top = best_member({**dict([best] if best else []), **members}, rank)
    result: dict[str, Any] = {**dict.fromkeys(METRICS, math.nan), MEMBERS: report}
    result |= {"status": POPULATION, "step": step, **extra}
    if top is not None:
        index, metrics = top
        result |= {m: metrics.get(m, math.nan) for m in METRICS}
        result |= {"status": str(metrics.get("status") or POPULATION), BEST[0]: index}
        result[BEST[1]] = point_of(metrics)
    return result | ({"done": True} if done else {})


def rank_of(experiment: Any) -> tuple[str, str]:
    """The search's first objective (metric, mode): what a population trial's best means."""
    return experiment.search.metrics[0], experiment.search.modes[0]


def best_member(
    members: Mapping[int, Mapping[str, Any]], rank: tuple[str, str]
) -> tuple[int, dict[str, Any]] | None:
    """(number, metrics) of the member best by `rank` (metric, mode), None when no member
    has a finite value of it; ties go to the lower number."""
    metric, mode = rank
    sign = 1.0 if mode == "min" else -1.0
    scored = [
        (sign * float(m[metric]), k, dict(m))
        for k, m in members.items()
        if isinstance(m.get(metric), int | float) and math.isfinite(m[metric])
    ]
    if not scored:
        return None
    _, index, metrics = min(scored, key=lambda s: (s[0], s[1]))
    return index, metrics


def decode(result: Mapping[str, Any] | None, size: int | None = None) -> list[Member]:
    """The members of a trial's result (nested or flattened by Tune), in order: one with
    index None for a point's result. `size`: the population trial's members (from its
    config), for a result that lacks some of them (a trial that raised before reporting):
    each comes with the trial's shared fields and no status."""
    record = _nested(result or {})
    if MEMBERS not in record and size is None:
        metrics = {k: v for k, v in record.items() if k != "status"}
        return [Member(None, metrics, str(record.get("status") or ""))]
    own = (MEMBERS, *METRICS, *_OWN)
    shared = {k: v for k, v in record.items() if k not in own and k.split("/")[0] not in BEST}
    reported = {int(k): dict(m) for k, m in record.get(MEMBERS, {}).items()}
    indices = range(size) if size is not None else sorted(reported)
    members = []
    for k in indices:
        own = reported.get(k, {})
        metrics = {**shared, **{n: v for n, v in own.items() if n != "status"}}
        members.append(Member(k, metrics, str(own.get("status") or "")))
    return members


def final(
    result: Mapping[str, Any] | None, size: int | None = None, error: bool = False
) -> list[Member]:
    """`decode` of an ended trial's last result: each status final (`final_status`: `error`
    when the trial raised, `stopped` for a member that was still running)."""
    return [replace(m, status=final_status(m.status, error)) for m in decode(result, size)]


def _nested(record: Mapping[str, Any]) -> dict[str, Any]:
    """`members/0/nll` keys (a flattened result) back into `members: {"0": {"nll": ...}}`; a
    metric's own `/` (`lambda/<term>`) stays in its name."""
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
