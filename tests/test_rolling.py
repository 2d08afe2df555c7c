"""Rolling populations (search.rolling) and successive halving (search.halving), without Ray:
the trial talks to a real `FamilyStudy` on a journal file, as its actor would."""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_study import family_study, tiny

from experiment.config import Experiment, experiment_from_dict
from experiment.status import PRUNED_VALUES_ATTR
from search.halving import dominates, fronts, rungs, stops
from search.members import SLOTS, decode, member_key, point_of
from search.rolling import State, slot_starts, train_rolling
from search.trial import TrialIO
from training.trainer import Trainer

TOLERANCE = 1e-5  # a member in a batched slot against its run alone (two matmul kernels)


# --------------------------------------------------------------------------- halving


def longest_chain_front(points: list[tuple[float, ...]], modes: list[str]) -> list[int]:
    """Brute force: a point's non-dominated-sorting front is the length of the longest chain
    of points dominating one another above it (a characterisation, not the peeling)."""
    oriented = [
        tuple(v if m == "min" else -v for v, m in zip(p, modes, strict=True)) for p in points
    ]

    @cache
    def depth(i: int) -> int:
        above = [j for j in range(len(points)) if dominates(oriented[j], oriented[i])]
        return 1 + max(map(depth, above)) if above else 0

    return [depth(i) for i in range(len(points))]


@pytest.mark.parametrize("seed", range(20))
def test_fronts_are_the_longest_dominance_chains(seed: int) -> None:
    rng = random.Random(seed)
    points = [(rng.randint(0, 5), rng.randint(0, 5)) for _ in range(rng.randint(1, 12))]
    modes = ["min", "max"]
    assert fronts(points, modes) == longest_chain_front(points, modes)


@pytest.mark.parametrize("seed", range(20))
def test_a_rung_stops_exactly_those_outside_the_best_fraction(seed: int) -> None:
    rng = random.Random(seed)
    peers = [(rng.random(), rng.random()) for _ in range(rng.randint(0, 9))]
    mine = (rng.random(), rng.random())
    rank = longest_chain_front([*peers, mine], ["min", "max"])
    better = sum(r < rank[-1] for r in rank[:-1])
    assert stops(peers, mine, 3, ["min", "max"]) == (better >= math.ceil((len(peers) + 1) / 3))


def test_a_rung_never_stops_a_point_of_its_peers_front_and_nan_is_worst() -> None:
    peers = [(1.0, 1.0), (2.0, 3.0), (3.0, 5.0)]  # one front: each trades nll for mi
    assert not stops(peers, (1.5, 2.0), 3, ["min", "max"])  # on that front too
    assert stops(peers, (float("nan"), 9.0), 3, ["min", "max"])
    assert stops(peers, (4.0, 0.5), 3, ["min", "max"])  # dominated by all three
    assert not stops([], (4.0, 0.5), 3, ["min", "max"])  # the first at a rung goes on


def test_rungs_are_fractions_of_the_steps() -> None:
    assert rungs(900, 3) == [100, 300]
    assert rungs(1500, 3) == [166, 500]
    assert rungs(10, 20) == []  # below one step: no rung


# --------------------------------------------------------------------------- rolling trials


def experiment_of(**search: Any) -> Experiment:
    data = tiny(
        "rolling",
        train={"steps": 60, "eval_every": 20, "batch_size": 32, "iw_samples": 4, "device": "cpu"},
        dataset={"name": "mog", "train_size": 256, "test_size": 32},
        search={"num_samples": 5, "sampler": "random", "population": 2, **search},
    )
    return experiment_from_dict(data)


class Run:
    """A rolling trial's IO: reports kept, checkpoints kept in folders under tmp_path."""

    def __init__(self, experiment: Experiment, tmp_path: Path, study: Any, kill_after: int = 0):
        self.experiment, self.tmp_path, self.study = experiment, tmp_path, study
        self.results: list[dict[str, Any]] = []
        self.checkpoints: list[Path] = []
        self.kill_after = kill_after

    def io(self) -> TrialIO:
        return TrialIO(
            report=self.report,
            open_checkpoint=lambda path: nullcontext(path),
            paths=self.checkpoints[::-1],
            study=self.study,
            trial_id="t",
        )

    def report(self, result: dict[str, Any], directory: Path | None) -> None:
        self.results.append(result)
        if directory is not None:
            kept = self.tmp_path / f"checkpoint_{len(self.checkpoints) + 1:03d}"
            kept.mkdir()
            for f in directory.iterdir():
                (kept / f.name).write_bytes(f.read_bytes())
            self.checkpoints.append(kept)
        if self.kill_after and len(self.results) == self.kill_after:
            raise KeyboardInterrupt("killed")


class Link:
    """The study as the actor serves it (`search.rolling.StudyLink`)."""

    def __init__(self, study: Any) -> None:
        self.study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self.study, name)


def ended(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every member a trial's reports say has ended, by key (the last word kept)."""
    out = {}
    for result in results:
        for m in decode(result):
            if m.index is not None and m.status not in ("running", ""):
                out[member_key("t", m.index)] = {**m.metrics, "status": m.status}
    return out


def complete(study: Any) -> list[optuna.trial.FrozenTrial]:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.study.get_trials(states=states)


def rolled(tmp_path: Path, budget: int, **search: Any) -> tuple[Experiment, Any, Run]:
    """A rolling trial of 2 slots run to the end of a study of `budget` members."""
    experiment = experiment_of(num_samples=budget, **search)
    study = family_study(experiment, tmp_path, budget=budget)
    run = Run(experiment, tmp_path, Link(study))
    train_rolling({SLOTS: 2}, experiment, run.io())
    return experiment, study, run


def test_a_rolling_trial_refills_its_slots_until_the_budget(tmp_path: Path) -> None:
    _, study, run = rolled(tmp_path, budget=5)
    members = ended(run.results)
    assert sorted(members) == [f"t#{n}" for n in range(5)]
    assert {m["status"] for m in members.values()} == {"ok"}
    assert len(complete(study)) == 5 and study.exhausted()
    assert run.results[-1].get("done")
    # a random sampler asks every point blind: both slots start at once, not staggered
    assert first_report(run.results)[1] == first_report(run.results)[0] == 0
    # results were told while others trained: the last point was asked after the first result
    trials = sorted(study.study.get_trials(), key=lambda t: t.number)
    assert trials[-1].datetime_start > min(t.datetime_complete for t in trials)


def first_report(results: list[dict[str, Any]]) -> dict[int, int]:
    """Each member's first report, by member number."""
    seen: dict[int, int] = {}
    for i, result in enumerate(results):
        for m in decode(result):
            if m.index is not None:
                seen.setdefault(m.index, i)
    return seen


def test_slots_past_a_model_samplers_start_up_start_staggered(tmp_path: Path) -> None:
    # tpe asks 2 of 6 points blind (its start-up), a trial's share of 2 concurrent: 1
    experiment = experiment_of(num_samples=6, sampler="tpe")
    assert [s.start for s in State.fresh(4, experiment).slots] == [0, 20, 40, 40]
    study = family_study(experiment, tmp_path, budget=6)
    run = Run(experiment, tmp_path, Link(study))
    train_rolling({SLOTS: 2}, experiment, run.io())
    seen = first_report(run.results)
    assert seen[1] > seen[0]  # slot 1 took its first member a report after slot 0
    assert len(ended(run.results)) == 6


@pytest.mark.parametrize(
    ("size", "at_once", "steps", "unit", "starts"),
    [
        (4, 1, 1000, 500, [0, 0, 500, 1000]),  # every slot staggered, as before the start-up
        (4, 4, 1000, 500, [0, 0, 0, 0]),
        (4, 9, 1000, 500, [0, 0, 0, 0]),
        (4, 2, 1000, 1, [0, 0, 333, 667]),
        (3, 0, 90, 10, [0, 30, 60]),  # slot 0 always starts at once
        (1, 1, 50, 10, [0]),
    ],
)
def test_slot_starts(size: int, at_once: int, steps: int, unit: int, starts: list[int]) -> None:
    assert slot_starts(size, at_once, steps, unit) == starts


@pytest.mark.parametrize("seed", range(20))
def test_slot_starts_idle_less_when_more_start_at_once(seed: int) -> None:
    rng = random.Random(seed)
    size, steps = rng.randint(1, 9), rng.randint(1, 2000)
    idle = [sum(slot_starts(size, b, steps, 1)) for b in range(1, size + 1)]
    assert idle == sorted(idle, reverse=True) and idle[-1] == 0
    assert all(0 <= s <= steps for s in slot_starts(size, 1, steps, 1))


def test_a_refilled_member_trains_as_it_would_alone(tmp_path: Path) -> None:
    experiment, _, run = rolled(tmp_path, budget=3)
    members = ended(run.results)
    key = "t#2"  # asked when slot 0's first member ended: a refill
    point = point_of(members[key])
    (alone,) = list(Trainer(experiment.with_values(point), threads=1).run())[-1]
    for metric in ("nll", "mi", "elbo"):
        assert math.isclose(members[key][metric], alone[metric], rel_tol=TOLERANCE), metric


def test_a_killed_rolling_trial_resumes_every_slot_exactly(tmp_path: Path) -> None:
    experiment = experiment_of()
    whole_study = family_study(experiment, tmp_path / "a", budget=5)
    whole = Run(experiment, tmp_path / "whole", Link(whole_study))
    (tmp_path / "whole").mkdir()
    train_rolling({SLOTS: 2}, experiment, whole.io())

    (tmp_path / "cut").mkdir()
    study = family_study(experiment, tmp_path / "b", budget=5)
    cut = Run(experiment, tmp_path / "cut", Link(study), kill_after=4)
    with pytest.raises(KeyboardInterrupt):
        train_rolling({SLOTS: 2}, experiment, cut.io())
    before = ended(cut.results)
    cut.kill_after = 0
    resumed = Run(experiment, tmp_path / "cut", Link(study))
    resumed.checkpoints = cut.checkpoints
    train_rolling({SLOTS: 2}, experiment, resumed.io())
    after = ended(resumed.results)
    assert not set(before) & set(after), "a finished member was trained again"
    members = before | after
    assert sorted(members) == sorted(ended(whole.results)) == [f"t#{n}" for n in range(5)]
    for key, values in ended(whole.results).items():
        assert members[key]["nll"] == values["nll"], key  # the same path: bit-exact
    assert len(complete(study)) == 5


def test_successive_halving_prunes_members_at_rungs(tmp_path: Path) -> None:
    _, study, run = rolled(tmp_path, budget=8, scheduler="halving", halving_rate=3)
    members = ended(run.results)
    assert len(members) == 8
    statuses = [m["status"] for m in members.values()]
    assert set(statuses) <= {"ok", "pruned"} and "ok" in statuses
    for values in members.values():
        if values["status"] == "pruned":
            assert values["step"] in rungs(60, 3)
    pruned = study.study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert len(pruned) == statuses.count("pruned")
    assert all(len(t.user_attrs[PRUNED_VALUES_ATTR]) == 2 for t in pruned)


def test_idle_slots_take_no_adam_step(tmp_path: Path) -> None:
    experiment = experiment_of()
    trainer = Trainer([experiment] * 3, threads=1)
    trainer.members[1].status = "idle"
    trainer.train_steps(4)
    steps = [int(s) for s in trainer.optimizers["model"].steps]
    assert steps == [4, 0, 4]


def test_a_refilled_member_follows_its_own_learning_rate_schedule(tmp_path: Path) -> None:
    from training.schedule import lr_factor

    data = tiny("cosine", train={"steps": 60, "eval_every": 20, "device": "cpu"})
    data["train"]["lr_schedule"] = {"kind": "cosine"}
    experiment = experiment_from_dict(data)
    trainer = Trainer([experiment] * 2, threads=1)
    trainer.train_steps(5)
    trainer.replace(1, experiment)
    trainer.train_steps(1)  # the rates of this update: member 0 at its step 5, member 1 at 0
    schedule, lr = experiment.train.lr_schedule, experiment.train.lr
    assert trainer.optimizers["model"].lrs == [lr * lr_factor(schedule, 5, 60), lr]
    assert [int(s) for s in trainer.optimizers["model"].steps] == [6, 1]
