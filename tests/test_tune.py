"""Tests for search/tune.py: real small searches on one local Ray (2 CPUs) for this module.

Each search trains tiny nets (16 units, 100 steps) on the embedded mog data with the real
`search.train.Trainer`. Resume and multi-node placement live in their own modules, each with
its own Ray.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray
import yaml

import run_search
from search import tune as search_tune
from search.config import Experiment, experiment_from_dict, load_experiment
from search.results import pareto_set
from search.spaces import parse_space

pytestmark = pytest.mark.slow


def tiny(name: str, **sections: Any) -> dict[str, Any]:
    """A search small enough for a test: 16 units, 100 steps, 100 evaluation points."""
    data: dict[str, Any] = {
        "name": name,
        "seed": 0,
        "dataset": {"name": "mog", "train_size": 2000, "test_size": 200},
        "model": {"hidden": 16},
        "objective": {"preset": "mmd-vae", "alpha": 0.0, "lambda": 10.0},
        "train": {"steps": 100, "eval_every": 50, "eval_size": 100},
        "space": {"family": "mmd-vae"},
        "search": {"num_samples": 4, "max_concurrent": 2, "sampler": "random"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def study_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=search_tune.STUDY_NAME, storage=url).get_trials()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


# --------------------------------------------------------------------------- searches


def test_search_from_the_command_line(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A multi-objective TPE search: rows in trials.csv, the same trials in the Optuna study."""
    data = tiny(
        "cli",
        search={
            "sampler": "tpe",
            "num_samples": 5,
            "enqueue_presets": [{"alpha": -0.5, "lambda": 10.0}],
        },
    )
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(data))
    code = run_search.main(["search", str(path), "--storage", str(tmp_path / "results")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    home = tmp_path / "results" / "cli"
    assert out[-1] == f"results: {home}"
    assert sum(line.startswith("[") and "/5]" in line for line in out) == 5  # one line a trial
    assert any(f"optuna-dashboard sqlite:///{home / 'optuna.db'}" in line for line in out)

    rows = read_csv(home / "trials.csv")
    assert len(rows) == 5 and {r["status"] for r in rows} == {"ok"}
    assert {r["mi_bound"] for r in rows} == {"mi"}
    keys = ("objective.params.alpha", "objective.params.lambda")
    assert any(
        float(r[keys[0]]) == -0.5 and float(r[keys[1]]) == 10.0 for r in rows
    )  # the enqueued point ran
    for row in rows:
        assert -1 <= float(row[keys[0]]) <= 1 and 1 <= float(row[keys[1]]) <= 5000
        assert math.isfinite(float(row["nll"])) and float(row["mi_cap"]) == pytest.approx(
            math.log(100)
        )

    by_tune_id = {
        t.user_attrs["tune_trial_id"]: t for t in study_trials(f"sqlite:///{home / 'optuna.db'}")
    }
    assert set(by_tune_id) == {r["trial_id"] for r in rows}
    for row in rows:
        trial = by_tune_id[row["trial_id"]]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs["status"] == "ok"
        assert trial.params == {k: pytest.approx(float(row[k])) for k in keys}
        assert trial.values == [pytest.approx(float(row["nll"])), pytest.approx(float(row["mi"]))]

    stored = load_experiment(home / "experiment.yaml")
    assert stored.search.metrics == ("nll", "mi") and stored.name == "cli"


def test_a_diverging_region_is_recorded_and_the_search_completes(
    local_ray: None, tmp_path: Path
) -> None:
    """ReLU nets with a huge learning rate overflow to NaN within two steps."""
    data = tiny(
        "diverge",
        model={"activation": "relu"},
        space={
            "family": "mmd-vae",
            "params": {"train.lr": {"low": 1e-3, "high": 1e6, "log": True}},
        },
        search={
            "num_samples": 3,
            "enqueue_presets": [{"train.lr": 1e-3}, {"train.lr": 1e5}],
        },
    )
    summary = search_tune.run_search(experiment_from_dict(data), storage=str(tmp_path))
    rows = {r["trial_id"]: r for r in read_csv(summary.trials_csv)}
    assert len(rows) == 3
    diverged = [r for r in rows.values() if r["status"] == "diverged"]
    assert diverged and any(r["status"] == "ok" for r in rows.values())
    for row in diverged:
        assert row["nll"] == "nan" and row["diverged_term"] and int(row["diverged_step"]) <= 5
    assert summary.counts["diverged"] == len(diverged)
    assert summary.counts["ok"] + summary.counts["diverged"] == 3
    for trial in study_trials(summary.study_url):
        status = rows[trial.user_attrs["tune_trial_id"]]["status"]
        assert trial.user_attrs["status"] == status
        failed = trial.state == optuna.trial.TrialState.FAIL
        assert failed == (status == "diverged")


def test_single_objective_with_asha_and_no_gpu(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ASHA stops trials early; gpu asked of a Ray without GPUs falls back to CPU, said once."""
    data = tiny(
        "asha",
        train={"steps": 150, "eval_every": 50},
        search={"num_samples": 4, "metrics": ["nll"], "modes": ["min"], "scheduler": "asha"},
        resources={"cpu": 1, "gpu": 0.5},
    )
    summary = search_tune.run_search(experiment_from_dict(data), storage=str(tmp_path))
    out = capsys.readouterr().out
    assert out.count("note: resources.gpu=0.5 but the Ray cluster has no GPU") == 1
    rows = read_csv(summary.trials_csv)
    assert len(rows) == 4
    assert {r["status"] for r in rows} <= {"ok", "stopped"}
    assert all(math.isfinite(float(r["nll"])) for r in rows)
    values = [t.value for t in study_trials(summary.study_url)]
    assert len(values) == 4 and all(v is not None for v in values)


def test_a_trial_that_raises_is_retried_then_recorded(local_ray: None, tmp_path: Path) -> None:
    """train.device: cuda on a machine without CUDA raises in the trial (not in the plan)."""
    data = tiny(
        "raises",
        train={"device": "cuda"},
        search={"num_samples": 2, "max_failures": 1},
    )
    summary = search_tune.run_search(experiment_from_dict(data), storage=str(tmp_path))
    rows = read_csv(summary.trials_csv)
    assert [r["status"] for r in rows] == ["error", "error"]
    assert all("cuda" in r["reason"] for r in rows)
    assert summary.counts["error"] == 2 and summary.counts["ok"] == 0
    states = {t.state for t in study_trials(summary.study_url)}
    assert states == {optuna.trial.TrialState.FAIL}


# --------------------------------------------------------------------------- the searcher alone


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "grid"])
def test_every_sampler_proposes_points_in_the_box(sampler: str, tmp_path: Path) -> None:
    e = experiment_from_dict(tiny("samplers", search={"sampler": sampler, "num_samples": 9}))
    plan = search_tune.plan_search(e, storage=str(tmp_path))
    searcher = search_tune.FamilySearch(
        search_tune.distributions(plan.space),
        metric=["nll", "mi"],
        mode=["min", "max"],
        sampler=search_tune.make_sampler(plan),
        experiment=plan.experiment,
    )
    points = []
    for i in range(plan.num_samples):
        config = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"status": "ok", "nll": 1.5 + i / 100, "mi": i / 10})
        points.append(tuple(config[k] for k in plan.space.keys))
    for alpha, lam in points:
        assert -1 <= alpha <= 1 and 1 <= lam <= 5000
    if sampler == "grid":
        assert plan.num_samples == 9 and len(set(points)) == 9  # 3 x 3, each point once
        assert {a for a, _ in points} == {-1.0, 0.0, 1.0}
    elif sampler != "nsga2":  # NSGA-II's crossover may propose a point again
        assert len(set(points)) == len(points)
    states = {t.state for t in searcher._ot_study.get_trials()}
    assert states == {optuna.trial.TrialState.COMPLETE}


def searcher_for(experiment: Experiment) -> search_tune.FamilySearch:
    space = parse_space(experiment)
    return search_tune.FamilySearch(
        search_tune.distributions(space),
        metric=["nll", "mi"],
        mode=["min", "max"],
        sampler=optuna.samplers.RandomSampler(seed=0),
        experiment=experiment,
    )


def test_refused_points_are_told_as_failed_and_never_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse_positive_alpha(experiment: Experiment, point: dict[str, float]) -> str | None:
        return "intractable: made up" if point["objective.params.alpha"] > 0 else None

    monkeypatch.setattr(search_tune, "refusal", refuse_positive_alpha)
    searcher = searcher_for(experiment_from_dict(tiny("refuse")))
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert all(c["objective.params.alpha"] <= 0 for c in configs)
    trials = searcher._ot_study.get_trials()
    refused = [t for t in trials if t.user_attrs.get("status") == "refused"]
    assert refused and all(t.state == optuna.trial.TrialState.FAIL for t in refused)
    assert all(t.params["objective.params.alpha"] > 0 for t in refused)


def test_statuses_reach_optuna() -> None:
    searcher = searcher_for(experiment_from_dict(tiny("status")))
    for trial_id in ("ok", "diverged", "error"):
        searcher.suggest(trial_id)
    searcher.on_trial_complete("ok", {"status": "ok", "nll": 1.4, "mi": 0.5})
    searcher.on_trial_complete("diverged", {"status": "diverged", "nll": math.nan, "mi": 0.1})
    searcher.on_trial_complete("error", None, error=True)
    searcher.on_trial_complete("ok", {"status": "ok", "nll": 9.9, "mi": 9.9})  # told once
    states = {t.user_attrs["tune_trial_id"]: t for t in searcher._ot_study.get_trials()}
    assert states["ok"].state == optuna.trial.TrialState.COMPLETE
    assert states["ok"].values == [1.4, 0.5]
    assert states["diverged"].state == optuna.trial.TrialState.FAIL
    assert states["error"].state == optuna.trial.TrialState.FAIL
    assert states["error"].user_attrs["status"] == "error"


def test_pareto_set() -> None:
    rows = [
        {"trial_id": "a", "status": "ok", "nll": "1.0", "mi": "1.0"},
        {"trial_id": "b", "status": "ok", "nll": "2.0", "mi": "3.0"},
        {"trial_id": "c", "status": "ok", "nll": "2.0", "mi": "0.5"},  # dominated by a
        {"trial_id": "d", "status": "diverged", "nll": "nan", "mi": "nan"},
    ]
    assert pareto_set(rows, ["nll", "mi"], ["min", "max"]) == ["a", "b"]
