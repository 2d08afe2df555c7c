"""Tests for search/study.py: the Optuna side of a search, alone (no Ray).

`FamilyStudy` asks Optuna for points and tells it results through the public ask/tell API; these
tests drive it as Tune's searcher would, on a journal file like a real search's.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest

from experiment.config import Experiment, experiment_from_dict
from experiment.samplers import SAMPLERS
from search import study as study_module
from search.plan import plan_search
from search.space_config import parse_space
from search.study import STUDY_NAME, FamilyStudy, make_sampler, open_storage

COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


def tiny(name: str, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "dataset": {"name": "mog"},
        "model": {"hidden": 16},
        "objective": {"preset": "mmd-vae", "alpha": 0.0, "lambda": 10.0},
        "space": {"family": "mmd-vae"},
        "search": {"num_samples": 4, "sampler": "random"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def family_study(
    experiment: Experiment,
    tmp_path: Path,
    owner: str = "here",
    sampler: str = "random",
    **kwargs: Any,
) -> FamilyStudy:
    """A study of `experiment` on a journal in `tmp_path`, with the table's `sampler` built as a
    search builds it (`make_sampler`: seeded, a grid sized by `search.num_samples`)."""
    e = experiment.with_values({"search.sampler": sampler})
    return FamilyStudy(
        str(tmp_path / "optuna.journal"),
        e,
        parse_space(e),
        make_sampler(plan_search(e, storage_root=str(tmp_path / "plan"))),
        ("min", "max"),
        owner=owner,
        **{"budget": 100, **kwargs},
    )


# A "general sampler" test below runs for every row of the table: refusals, enqueued points
# and resume are the search's, and each sampler must live with them.
EVERY_SAMPLER = pytest.mark.parametrize("sampler", sorted(SAMPLERS))


def trials(path: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(path)).get_trials()


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_proposes_points_in_the_box(sampler: str, tmp_path: Path) -> None:
    """Each row of the sampler table, built by `make_sampler` and driven as a search would."""
    e = experiment_from_dict(tiny("samplers", search={"sampler": sampler, "num_samples": 9}))
    plan = plan_search(e, storage_root=str(tmp_path))
    assert isinstance(make_sampler(plan), optuna.samplers.BaseSampler)
    study = FamilyStudy(
        plan.study,
        plan.experiment,
        plan.space,
        make_sampler(plan),
        plan.modes,
        owner="x",
        budget=plan.num_samples,
    )
    points = []
    for i in range(plan.num_samples):
        config = study.ask(f"t{i}")
        study.tell(f"t{i}", "ok", {"nll": 1.5 + i / 100, "mi": i / 10}, plan.metrics)
        points.append(tuple(config[k] for k in plan.space.keys))
    for alpha, lam in points:
        assert -1 <= alpha <= 1 and 1 <= lam <= 5000
    if SAMPLERS[sampler].grid:
        assert plan.num_samples == 9 and len(set(points)) == 9  # 3 x 3, each point once
        assert {a for a, _ in points} == {-1.0, 0.0, 1.0}
    elif sampler != "nsga2":  # NSGA-II's crossover may propose a point again
        assert len(set(points)) == len(points)
    assert {t.state for t in trials(plan.study)} == {COMPLETE}


@EVERY_SAMPLER
def test_refused_points_are_told_as_failed_and_never_returned(
    sampler: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse_positive_alpha(experiment: Experiment, point: dict[str, float]) -> str | None:
        return "intractable: made up" if point["objective.params.alpha"] > 0 else None

    monkeypatch.setattr(study_module, "refusal", refuse_positive_alpha)
    experiment = experiment_from_dict(tiny("refuse", search={"num_samples": 9}))  # grid: 3 x 3
    study = family_study(experiment, tmp_path, sampler=sampler)
    configs = []
    for i in range(6):  # results told: the model-based samplers model past their start-up
        configs.append(study.ask(f"t{i}"))
        alpha = configs[-1]["objective.params.alpha"]  # better towards the refused side
        study.tell(f"t{i}", "ok", {"nll": 2.0 - alpha, "mi": 1.0 + alpha}, ("nll", "mi"))
    assert all(c["objective.params.alpha"] <= 0 for c in configs)
    refused = [t for t in trials(study.study_url) if t.user_attrs.get("status") == "refused"]
    assert refused and all(t.state == FAIL for t in refused)
    assert all(t.params["objective.params.alpha"] > 0 for t in refused)
    assert study.refused() == len(refused)


def test_statuses_reach_optuna_once(tmp_path: Path) -> None:
    study = family_study(experiment_from_dict(tiny("status")), tmp_path)
    for key in ("ok", "diverged", "error", "stopped"):
        study.ask(key)
    names = ("nll", "mi")
    study.tell("ok", "ok", {"nll": 1.4, "mi": 0.5}, names)
    study.tell("diverged", "diverged", {"nll": math.nan, "mi": 0.1}, names)
    study.tell("error", "error", {}, names)
    study.tell("stopped", "stopped", {"nll": 2.0, "mi": 0.1}, names)  # by the scheduler
    study.tell("ok", "ok", {"nll": 9.9, "mi": 9.9}, names)  # told once: a resumed trial
    by_key = {t.user_attrs["tune_trial_id"]: t for t in trials(study.study_url)}
    assert by_key["ok"].state == COMPLETE and by_key["ok"].values == [1.4, 0.5]
    assert by_key["stopped"].state == COMPLETE
    assert (
        by_key["diverged"].state == FAIL and by_key["diverged"].user_attrs["status"] == "diverged"
    )
    assert by_key["error"].state == FAIL and by_key["error"].user_attrs["status"] == "error"


@EVERY_SAMPLER
def test_enqueued_points_come_first_and_once(sampler: str, tmp_path: Path) -> None:
    experiment = experiment_from_dict(tiny("enqueue"))
    point = {"objective.params.alpha": -1.0, "objective.params.lambda": 1.0}  # on the grid too
    study = family_study(experiment, tmp_path, sampler=sampler, points=[point])
    assert study.ask("first") == point
    again = family_study(experiment, tmp_path, sampler=sampler, points=[point])  # resumed
    assert again.ask("second") != point


@EVERY_SAMPLER
def test_a_pickled_study_continues_from_its_storage(sampler: str, tmp_path: Path) -> None:
    """What Tune's searcher checkpoint holds: the mapping and settings (the sampler with its
    fitted state), no open storage."""
    study = family_study(experiment_from_dict(tiny("pickle")), tmp_path, sampler=sampler)
    for key, values in (("a", [1.0, 1.0]), ("b", [2.0, 2.0]), ("c", [1.5, 3.0])):
        study.ask(key)
        study.tell(key, "ok", {"nll": values[0], "mi": values[1]}, ("nll", "mi"))
    study.ask("d")  # past the start-up: a model-based sampler has fitted its model
    study.ask("e")
    restored = pickle.loads(pickle.dumps(study))
    restored.tell("d", "ok", {"nll": 2.5, "mi": 2.5}, ("nll", "mi"))
    restored.tell("a", "ok", {"nll": 5.0, "mi": 5.0}, ("nll", "mi"))  # already told: kept
    restored.ask("f")  # the restored sampler proposes from the study
    by_key = {t.user_attrs["tune_trial_id"]: t for t in trials(study.study_url)}
    assert by_key["a"].values == [1.0, 1.0] and by_key["d"].values == [2.5, 2.5]
    assert by_key["e"].state == by_key["f"].state == optuna.trial.TrialState.RUNNING


def test_orphans_are_failed_and_other_owners_trials_left_alone(tmp_path: Path) -> None:
    """Several drivers may share one study (search.study): each fails only its own orphans."""
    experiment = experiment_from_dict(tiny("orphans"))
    ours, theirs = family_study(experiment, tmp_path), family_study(experiment, tmp_path, "there")
    ours.ask("asked-never-run")
    theirs.ask("still-running-elsewhere")
    assert ours.fail_orphans() == 1
    states = {t.user_attrs["tune_trial_id"]: t for t in trials(ours.study_url)}
    assert states["asked-never-run"].state == FAIL
    assert states["asked-never-run"].user_attrs["status"] == "orphaned"
    assert states["still-running-elsewhere"].state == optuna.trial.TrialState.RUNNING


@EVERY_SAMPLER
def test_a_resumed_study_forgets_what_its_snapshot_never_knew(sampler: str, tmp_path: Path) -> None:
    """The driver died after asking for "b" but before Tune's snapshot recorded it: "b" will
    never report, so it is failed as orphaned and the budget asks for a replacement."""
    experiment = experiment_from_dict(tiny("budget"))
    study = family_study(experiment, tmp_path, sampler=sampler, budget=2)
    study.ask("a")
    snapshot = pickle.dumps(study)  # what Tune's last experiment snapshot holds
    study.ask("b")
    study.tell("a", "ok", {"nll": 1.0, "mi": 1.0}, ("nll", "mi"))
    assert study.exhausted()
    resumed = pickle.loads(snapshot)
    assert not resumed.exhausted()  # "a" counts, "b" does not
    resumed.ask("c")
    assert resumed.exhausted()
    by_key = {t.user_attrs["tune_trial_id"]: t for t in trials(study.study_url)}
    assert by_key["b"].state == FAIL and by_key["b"].user_attrs["status"] == "orphaned"
    assert by_key["a"].state == COMPLETE
