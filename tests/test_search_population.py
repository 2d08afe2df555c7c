"""Population trials in the search, without Ray: the size rule, the study's members, and the
trial body (`search.trial`) against plain trials of the same points, including a resume.

The Ray side (a real search, SIGKILL and --resume) is tests/test_tune_population.py; the
population trainer itself is tests/test_population.py.
"""

from __future__ import annotations

import json
import math
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from optuna.trial import TrialState

from experiment.config import ConfigError, Experiment, experiment_from_dict
from search import study as study_module
from search.members import decode, member_key
from search.plan import plan_search
from search.populations import CPU_MAX_MEMBERS, GPU_MAX_MEMBERS, population_size
from search.study import FamilyStudy, make_sampler
from search.trial import TrialIO, run

COMPARED = ("nll", "nll_train", "elbo", "rate", "distortion", "mi", "mi_upper", "mmd_qz_pz")


def experiment(**sections: Any) -> Experiment:
    data: dict[str, Any] = {
        "name": "pop",
        "dataset": {"name": "mog", "train_size": 1000, "test_size": 200},
        "model": {"hidden": 16},
        "objective": {"preset": "infovae", "beta": 1.0, "lambda": 10.0},
        "train": {"steps": 40, "eval_every": 20, "eval_size": 100, "nll_train_size": 100},
        "space": {"family": "infovae"},
        "search": {"num_samples": 6, "max_concurrent": 2, "sampler": "random"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return experiment_from_dict(data)


# --------------------------------------------------------------------------- the size rule


def test_auto_fills_each_concurrent_slot_and_caps_by_device() -> None:
    small = experiment(search={"population": "auto", "num_samples": 40, "max_concurrent": 2})
    assert population_size(small, 40, gpu=False)[0] == CPU_MAX_MEMBERS
    assert population_size(small, 6, gpu=False)[0] == 3  # 6 trials over 2 slots
    assert population_size(small, 1000, gpu=True)[0] == GPU_MAX_MEMBERS


def test_auto_keeps_wide_networks_single_on_a_cpu_but_not_on_a_gpu() -> None:
    wide = experiment(model={"hidden": 1024}, search={"population": "auto", "num_samples": 32})
    k, note = population_size(wide, 32, gpu=False)
    assert k == 1 and "compute-bound" in note
    assert population_size(wide, 32, gpu=True)[0] == 16


def test_auto_does_not_batch_a_space_over_training_settings() -> None:
    e = experiment(search={"population": "auto", "num_samples": 8})
    k, note = population_size(e, 8, gpu=False, keys=["objective.params.beta", "train.lr"])
    assert k == 1 and "train.lr" in note
    assert population_size(e, 8, gpu=False, keys=["objective.params.beta"])[0] == 4


def test_an_explicit_size_the_population_cannot_train_is_one_clear_error() -> None:
    four = experiment(search={"population": 4})
    with pytest.raises(ConfigError, match=r"search.population: 4 members, but .*train.lr"):
        population_size(four, 6, gpu=False, keys=["objective.params.beta", "train.lr"])


def test_the_plan_settles_the_population_before_ray(tmp_path: Path) -> None:
    """`auto` is resolved in the plan, where experiment.yaml is written from (once, by
    `search.tune.run_search`); an explicit size the search cannot train fails there too."""
    plan = plan_search(experiment(search={"population": "auto"}), storage_root=str(tmp_path))
    assert plan.experiment.search.population == 3  # 6 trials over 2 slots, on a CPU
    assert plan.population_note == "search.population auto -> 3 members per trial (CPU)"
    searched_lr = {"family": "infovae", "params": {"train.lr": {"low": 1e-4, "high": 1e-2}}}
    with pytest.raises(ConfigError, match="search.population: 4 members, but .*train.lr"):
        plan_search(
            experiment(space=searched_lr, search={"population": 4}), storage_root=str(tmp_path)
        )


def test_the_plan_sizes_populations_for_the_gpus_trials_will_get(tmp_path: Path) -> None:
    """A local Ray has this machine's GPUs; a cluster's are taken as `resources.gpu` asks."""
    e = experiment(search={"population": "auto", "num_samples": 200}, resources={"gpu": 0.5})
    here = GPU_MAX_MEMBERS if torch.cuda.is_available() else CPU_MAX_MEMBERS
    assert plan_search(e, storage_root=str(tmp_path)).experiment.search.population == here
    joined = plan_search(e, storage_root=str(tmp_path), address="10.0.0.1:6379")
    assert joined.experiment.search.population == GPU_MAX_MEMBERS


def test_bad_population_values_fail_at_load_time_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="search.population: must be > 0 or auto"):
        experiment(search={"population": 0})
    with pytest.raises(ConfigError, match="search.population: asha"):
        experiment(
            search={"population": 4, "scheduler": "asha", "metrics": ["nll"], "modes": ["min"]}
        )


# --------------------------------------------------------------------------- the study


def family_study(tmp_path: Path, e: Experiment) -> FamilyStudy:
    plan = plan_search(e, storage_root=str(tmp_path))
    return FamilyStudy(
        str(tmp_path / "study.journal"),
        plan.experiment,
        plan.space,
        make_sampler(plan),
        plan.modes,
        owner="here",
        budget=plan.num_samples,
    )


def test_each_member_is_its_own_optuna_trial_and_the_budget_counts_members(
    tmp_path: Path,
) -> None:
    study = family_study(tmp_path, experiment(search={"num_samples": 5}))
    first = study.ask_population("t1", 3)
    last = study.ask_population("t2", 3)  # 2 left of the budget of 5
    assert (len(first), len(last)) == (3, 2) and study.exhausted()
    assert study.members_of("t1") == ["t1#0", "t1#1", "t1#2"]
    for k in range(3):
        study.tell(member_key("t1", k), "ok", {"nll": 1.0 + k, "mi": 0.5}, ("nll", "mi"))
    study.tell("t2#0", "diverged", {"nll": math.nan}, ("nll", "mi"))
    trials = study.study.get_trials()
    assert [t.user_attrs["member"] for t in trials] == [0, 1, 2, 0, 1]
    assert [t.state for t in trials[:4]] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert trials[1].values == [2.0, 0.5]
    assert trials[4].state == TrialState.RUNNING  # not told yet


def test_refused_points_never_enter_a_population(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_small_beta(e: Experiment, point: dict[str, float]) -> str | None:
        return "refused for the test" if point["objective.params.beta"] < 1.0 else None

    monkeypatch.setattr(study_module, "refusal", refuse_small_beta)
    study = family_study(tmp_path, experiment(search={"num_samples": 8}))
    points = study.ask_population("t", 8)
    refused = [t for t in study.study.get_trials() if t.user_attrs.get("status") == "refused"]
    assert len(points) == 8 and refused  # β over [0.2, 2]: about half are refused
    assert all(t.state == TrialState.FAIL for t in refused)
    assert all(p["objective.params.beta"] >= 1.0 for p in points)
    members = {study.numbers[key] for key in study.members_of("t")}
    assert len(members) == 8 and not members & {t.number for t in refused}


# --------------------------------------------------------------------------- the trial body


class Recorder:
    """A TrialIO that keeps every report and a copy of every checkpoint folder."""

    def __init__(self, tmp: Path, paths: list[Path] | None = None):
        self.tmp, self.reports, self.saved = tmp, [], []
        self.io = TrialIO(
            report=self.report,
            open_checkpoint=lambda path: nullcontext(path),
            paths=paths or [],
            threads=1,
            extra={"node_id": "here"},
        )

    def report(self, metrics: dict[str, Any], directory: Path | None) -> None:
        self.reports.append(metrics)
        if directory is not None:
            copy = self.tmp / f"checkpoint_{len(self.saved):03d}"
            shutil.copytree(directory, copy)
            self.saved.append(copy)


POINTS = [
    {"objective.params.beta": 0.5, "objective.params.lambda": 3.0},
    {"objective.params.beta": 1.5, "objective.params.lambda": 300.0},
    {"objective.params.beta": 1.0, "objective.params.lambda": -1.0},  # λ <= 0: refused
]


def test_a_population_trial_reports_each_member_as_its_plain_trial_would(tmp_path: Path) -> None:
    e = experiment()
    population = Recorder(tmp_path / "population")
    run({"members": POINTS}, e, population.io)
    final = population.reports[-1]
    assert final["done"] and final["node_id"] == "here" and len(population.reports) == 2
    statuses = {m.index: m.status for m in decode(final)}
    members = {m.index: m.metrics for m in decode(final)}
    assert statuses[2] == "refused" and "must be > 0" in members[2]["reason"]
    for k, point in enumerate(POINTS[:2]):
        plain = Recorder(tmp_path / f"plain{k}")
        run(point, e, plain.io)
        alone = plain.reports[-1]
        assert statuses[k] == alone["status"] == "ok"
        assert members[k]["step"] == alone["step"] == 40
        for metric in COMPARED:
            assert members[k][metric] == pytest.approx(alone[metric], rel=1e-4, abs=1e-6), metric


def test_a_population_trial_resumes_each_member_where_its_checkpoint_left_it(
    tmp_path: Path,
) -> None:
    e = experiment()
    whole = Recorder(tmp_path / "whole")
    run({"members": POINTS[:2]}, e, whole.io)
    halfway = whole.saved[0]  # after the first evaluation (step 20)
    resumed = Recorder(tmp_path / "resumed", paths=[halfway])
    run({"members": POINTS[:2]}, e, resumed.io)
    assert len(resumed.reports) == 1  # one evaluation left
    for before, after in zip(decode(whole.reports[-1]), decode(resumed.reports[-1]), strict=True):
        assert after.metrics["restored_from_step"] == 20
        for metric in COMPARED:
            assert after.metrics[metric] == before.metrics[metric], metric
    again = Recorder(tmp_path / "again", paths=[whole.saved[-1]])  # finished: not retrained
    run({"members": POINTS[:2]}, e, again.io)
    assert len(again.reports) == 1 and again.reports[0].pop("reported_again")
    assert json.dumps(again.reports[0], sort_keys=True) == json.dumps(
        whole.reports[-1], sort_keys=True
    )  # NaN-safe equality: the trial's own metrics are NaN


def test_optuna_sees_a_member_trial_as_its_own(tmp_path: Path) -> None:
    """Members are trials of the study's own kind: a search with population 1 and one with
    population 3 ask the same first points of a seeded random sampler."""
    e = experiment(search={"num_samples": 3})
    one, three = family_study(tmp_path / "a", e), family_study(tmp_path / "b", e)
    singles = [one.ask(f"t{k}") for k in range(3)]
    assert three.ask_population("p", 3) == singles
