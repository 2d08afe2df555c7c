"""A rolling population trial: K member slots, refilled as members end; no Ray here.

A rolling trial (config `{"slots": K}`, `search.refill`) holds K slots of one `Trainer`. When
a member finishes its steps, diverges, or is stopped at a rung by successive halving
(`search.halving`), its result is told to the study at once and its slot is given a newly
asked point: fresh networks, Adam state and streams from that point's experiment
(`Trainer.replace`). So the sampler sees results while the batch stays full. The slots whose
first point the sampler asks blind anyway (its start-up) start at once; the others start
staggered across one member's training, so that their first points are asked after results
and members end one after another (`slot_starts`).

Members are numbered in the order the trial asked them: member n is `<trial id>#n`, its own
Optuna trial, trials.csv row and curve. Each report holds the members still training and those
that ended since the previous report (their last metrics, a final status); a member's metrics
carry its point's dotted keys, so a row needs nothing from the trial's config.

The study is reached through a `StudyLink` (`search.tune`: a Ray actor on the driver's node, so
it works on a cluster whatever the study's storage). Every report comes with a checkpoint of
the trainer and the slot table; a resumed trial continues every slot where the checkpoint
left it and first tells the study which members it holds (`claim`): a point asked after that
checkpoint by a driver that then died never trains, and is not counted.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from experiment.config import ConfigError, Experiment
from experiment.samplers import SAMPLERS
from experiment.status import DIVERGED, IDLE, OK, PRUNED, REFUSED, RUNNING
from experiment.typed_yaml import plain
from search import checkpoints
from search.halving import rungs
from search.members import SLOTS, best_member, member_key, population_result, rank_of
from training.trainer import Trainer

STATE_FILE = "rolling.yaml"  # beside trainer.pt in each checkpoint: the slot table


class StudyLink(Protocol):
    """What a rolling trial asks of the study (`search.study.FamilyStudy`'s methods)."""

    def ask_member(self, trial_id: str, member: int) -> dict[str, float] | None: ...
    def tell(self, key: str, status: str, metrics: Mapping[str, Any]) -> None: ...
    def rung(self, key: str, step: int, metrics: Mapping[str, Any]) -> bool: ...
    def claim(self, trial_id: str, keys: Sequence[str]) -> None: ...


@dataclass
class Slot:
    start: int  # the trial's step at which this slot takes its first member
    member: int | None = None  # the member it trains (its number in the trial)
    point: dict[str, float] | None = None
    closed: bool = False  # the budget is spent: this slot takes no more members


@dataclass
class State:
    slots: list[Slot]
    step: int = 0  # the trial's own clock, in training steps
    asked: int = 0  # members asked so far: the next one's number
    ended: dict[int, dict[str, Any]] = field(default_factory=dict)  # since the last report
    best: list[Any] | None = None  # [number, metrics] of the best member ended so far

    @classmethod
    def fresh(cls, size: int, experiment: Experiment) -> State:
        t, s = experiment.train, experiment.search
        unmodelled = SAMPLERS[s.sampler].unmodelled(s.num_samples)
        at_once = math.ceil(unmodelled / max(1, s.max_concurrent))  # this trial's share
        return cls([Slot(start) for start in slot_starts(size, at_once, t.steps, t.eval_every)])


def slot_starts(size: int, at_once: int, steps: int, unit: int) -> list[int]:
    """The step at which each of `size` slots takes its first member: the first `at_once` (at
    least one) at step 0, the others spread over one member's `steps`, slot j of those m at
    j/(m + 1) of them, rounded to `unit` (an evaluation's: members then stop together).

    A staggered slot idles (and its masked member still computes) until its start; what that
    buys is a first point asked after some results. The points a sampler asks blind anyway
    (its start-up: `experiment.samplers.Sampler.unmodelled`) gain nothing from waiting, so their
    slots start at once; staggering all K slots cost (K - 1) / 2 members' training per trial
    (docs/SEARCH.md, "Rolling populations")."""
    now = min(size, max(1, at_once))
    later = size - now
    staggered = [round(j * steps / (later + 1) / unit) * unit for j in range(1, later + 1)]
    return [0] * now + staggered


def train_rolling(config: Mapping[str, Any], experiment: Experiment, io: Any) -> None:
    """Train a rolling trial of `config[SLOTS]` slots to the end of the search's budget."""
    study: StudyLink = io.study
    state, trainer = _restore(int(config[SLOTS]), experiment, io)
    # the members this trial holds: any other still running was asked after its checkpoint
    # (or its checkpoints are unreadable) and will never train
    study.claim(io.trial_id, _keys(state, io.trial_id))
    schedule = _Schedule(experiment)
    while True:
        trainer = _fill(state, trainer, experiment, io)
        if trainer is None or not any(s.member is not None for s in state.slots):
            if all(s.closed for s in state.slots):
                break
            state.step = min(s.start for s in state.slots if not s.closed)  # an idle wait
            continue
        running = [k for k, s in enumerate(state.slots) if s.member is not None]
        due = {k: schedule.next_stop(trainer.members[k].step) for k in running}
        waits = [s.start - state.step for s in state.slots if s.member is None and not s.closed]
        n = min([due[k] - trainer.members[k].step for k in running] + [w for w in waits if w > 0])
        trainer.train_steps(n)
        state.step += n
        at_stop = [k for k in running if trainer.members[k].step >= due[k]]
        at_stop += [
            k for k in running if trainer.members[k].status == DIVERGED and k not in at_stop
        ]
        metrics = dict(zip(at_stop, trainer.evaluate(at_stop), strict=True))
        latest = {}
        for k, values in metrics.items():
            slot = state.slots[k]
            values = {**values, **(slot.point or {}), **io.extra}
            status = _ended(values, schedule, study, member_key(io.trial_id, slot.member))
            if status is None:
                latest[slot.member] = values
                continue
            values["status"] = status
            study.tell(member_key(io.trial_id, slot.member), status, values)
            state.ended[slot.member] = values
            trainer.members[k].status = IDLE
            slot.member, slot.point = None, None
        trainer = _fill(state, trainer, experiment, io)
        _report(state, trainer, latest, io, rank_of(experiment), done=False)
    _report(state, trainer, {}, io, rank_of(experiment), done=True)


class _Schedule:
    """Where a member stops to be evaluated: every `eval_every`, at each rung, at the end."""

    def __init__(self, experiment: Experiment) -> None:
        t, s = experiment.train, experiment.search
        self.steps, self.every = t.steps, t.eval_every
        self.rungs = rungs(t.steps, s.halving_rate) if s.scheduler == "halving" else []

    def next_stop(self, step: int) -> int:
        stops = [(step // self.every + 1) * self.every, self.steps]
        stops += [r for r in self.rungs if r > step]
        return min(stops)


def _ended(values: dict[str, Any], schedule: _Schedule, study: StudyLink, key: str) -> str | None:
    """The final status of a member at a stop, or None while it trains on."""
    if values.get("status") == DIVERGED:
        return DIVERGED
    if values["step"] >= schedule.steps:
        return OK
    if values["step"] in schedule.rungs and study.rung(key, values["step"], values):
        return PRUNED
    return None


def _fill(state: State, trainer: Trainer | None, experiment: Experiment, io: Any) -> Trainer | None:
    """Ask a point for every empty slot whose start has come; build the trainer on the first."""
    study: StudyLink = io.study
    for k, slot in enumerate(state.slots):
        while slot.member is None and not slot.closed and slot.start <= state.step:
            point = study.ask_member(io.trial_id, state.asked)
            if point is None:
                slot.closed = True
                break
            number, state.asked = state.asked, state.asked + 1
            try:
                member_experiment = experiment.with_values(point)
            except ConfigError as reason:  # the study checks points first: a safety net
                values = {"status": REFUSED, "reason": str(reason), "step": 0, **point}
                study.tell(member_key(io.trial_id, number), REFUSED, values)
                state.ended[number] = values
                continue
            slot.member, slot.point = number, dict(point)
            if trainer is None:
                trainer = Trainer([member_experiment] * len(state.slots), threads=io.threads)
                for j in range(len(state.slots)):
                    trainer.members[j].status = RUNNING if j == k else IDLE
            else:
                trainer.replace(k, member_experiment)
    return trainer


def _keys(state: State, trial_id: str) -> list[str]:
    return [member_key(trial_id, s.member) for s in state.slots if s.member is not None]


def _report(
    state: State,
    trainer: Trainer | None,
    latest: dict[int, dict[str, Any]],
    io: Any,
    rank: tuple[str, str],
    done: bool,
) -> None:
    members = {**latest, **state.ended}
    best = (int(state.best[0]), state.best[1]) if state.best else None
    result = population_result(members, done, io.extra, rank, best)
    ended = best_member({**dict([best] if best else []), **state.ended}, rank)
    state.best = list(ended) if ended else None  # the trial's best member, in its checkpoint
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        if trainer is not None:
            trainer.save_checkpoint(folder)
        # with the members this report ends: a driver stopped before it read the report
        # gets them again from the trial resumed from this checkpoint (rows are kept once)
        saved = asdict(state)
        state.ended = {}
        (folder / STATE_FILE).write_text(yaml.safe_dump(plain(saved)))
        if done:
            checkpoints.write_final(folder, result)
        io.report(result, folder)


def _restore(size: int, experiment: Experiment, io: Any) -> tuple[State, Trainer | None]:
    """The newest readable checkpoint's slots and trainer, else a fresh start."""
    for path in io.paths:
        try:
            with io.open_checkpoint(path) as directory:
                saved = yaml.safe_load((Path(directory) / STATE_FILE).read_text())
                if not isinstance(saved, dict):
                    raise ValueError(f"{STATE_FILE} in {path} is cut short")
                slots = [Slot(**s) for s in saved["slots"]]
                ended = {int(k): v for k, v in (saved.get("ended") or {}).items()}
                state = State(slots, saved["step"], saved["asked"], ended, saved.get("best"))
                points = [s.point for s in state.slots]
                if not any(p is not None for p in points):
                    return state, None
                first = next(p for p in points if p is not None)
                experiments = [experiment.with_values(p or first) for p in points]
                trainer = Trainer(experiments, threads=io.threads)
                trainer.load_checkpoint(Path(directory))
                return state, trainer
        except checkpoints.RESUME_ERRORS:
            continue
    if size < 1:
        raise ConfigError(f"a rolling trial needs at least one slot, got {size}")
    return State.fresh(size, experiment), None
