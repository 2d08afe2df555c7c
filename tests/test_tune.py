"""Tests for search/tune.py: real small searches on one local Ray (2 CPUs) for this module.

Each search trains tiny nets (16 units, 100 steps) on the embedded mog data with the real
`training.Trainer`. Resume and multi-node placement live in their own modules, each with
its own Ray; the Optuna side alone is tests/test_study.py.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import ray
import yaml

import run_search
from analysis.summary import Summary, read_summary
from experiment.config import experiment_from_dict, load_experiment
from search import storage
from search import tune as search_tune
from search.study import STUDY_NAME, open_storage

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


def study_trials(study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(study)).get_trials()


def search(data: dict[str, Any], root: Path | None, **options: Any) -> tuple[Summary, str]:
    """Run a search as `run_search.py search` does (results under `root`, else the file's
    storage); its summary and its study."""
    experiment = experiment_from_dict(data)
    root_text = str(root) if root else None
    plan, study = search_tune.run_search(experiment, storage_root=root_text, **options)
    return read_summary(plan, study.refused()), plan.study


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
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
    journal = home / "optuna.journal"  # the study lives with the experiment
    assert any(line == f"Optuna study: optuna-dashboard {journal}" for line in out)

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

    by_tune_id = {t.user_attrs["tune_trial_id"]: t for t in study_trials(str(journal))}
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
    seen: list[int] = []

    def after_trial(plan: Any) -> None:  # e.g. the dashboard, rewritten as trials finish
        seen.append(len(read_csv(plan.trials_csv)))
        if len(seen) == 2:
            raise RuntimeError("a broken hook")  # said, and the search goes on

    summary, study = search(data, tmp_path, after_trial=after_trial)
    assert seen == [1, 2, 3]
    rows = {r["trial_id"]: r for r in read_csv(summary.trials_csv)}
    assert len(rows) == 3
    diverged = [r for r in rows.values() if r["status"] == "diverged"]
    assert diverged and any(r["status"] == "ok" for r in rows.values())
    for row in diverged:
        assert row["nll"] == "nan" and row["diverged_term"] and int(row["diverged_step"]) <= 5
    assert summary.counts["diverged"] == len(diverged)
    assert summary.counts["ok"] + summary.counts["diverged"] == 3
    for trial in study_trials(study):
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
    summary, study = search(data, tmp_path)
    out = capsys.readouterr().out
    assert out.count("note: resources.gpu=0.5 but the Ray cluster has no GPU") == 1
    rows = read_csv(summary.trials_csv)
    assert len(rows) == 4
    assert {r["status"] for r in rows} <= {"ok", "stopped"}
    assert all(math.isfinite(float(r["nll"])) for r in rows)
    values = [t.value for t in study_trials(study)]
    assert len(values) == 4 and all(v is not None for v in values)


def test_a_trial_that_raises_is_retried_then_recorded(local_ray: None, tmp_path: Path) -> None:
    """train.device: cuda on a machine without CUDA raises in the trial (not in the plan)."""
    data = tiny(
        "raises",
        train={"device": "cuda"},
        search={"num_samples": 2, "max_failures": 1},
    )
    summary, study = search(data, tmp_path)
    rows = read_csv(summary.trials_csv)
    assert [r["status"] for r in rows] == ["error", "error"]
    assert all("cuda" in r["reason"] for r in rows)
    assert summary.counts["error"] == 2 and summary.counts["ok"] == 0
    states = {t.state for t in study_trials(study)}
    assert states == {optuna.trial.TrialState.FAIL}


# --------------------------------------------------------------------------- where results live


def test_the_demo_runs_with_overrides_and_no_sub_command(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--set", "search.num_samples=2", "--set", "train.steps=100"]
    argv += ["--set", "train.eval_every=100", "--set", "dataset.test_size=100"]
    assert run_search.main([*argv, "--storage", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "quick" / "trials.csv")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    assert capsys.readouterr().out.splitlines()[-1] == f"results: {tmp_path / 'quick'}"


def test_a_uri_storage_keeps_the_study_and_resumes_on_another_machine(
    local_ray: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file:// stands in for a bucket: the driver's files are copied up as trials finish, and
    a driver with none of them (an empty cache) resumes from the bucket alone."""
    monkeypatch.setattr(storage, "CACHE", tmp_path / "driver-cache")
    bucket = f"file://{tmp_path / 'bucket'}"
    data = tiny("remote", storage=bucket, search={"num_samples": 2})
    summary, study = search(data, None)  # the file's storage: the URI
    remote = tmp_path / "bucket" / "remote"
    for name in ("experiment.yaml", "trials.csv", "optuna.journal"):
        assert (remote / name).read_bytes() == (
            tmp_path / "driver-cache" / "remote" / name
        ).read_bytes()
    assert summary.counts["ok"] == 2
    complete = [t for t in study_trials(str(remote / "optuna.journal")) if t.values]
    assert len(complete) == 2

    shutil.rmtree(tmp_path / "driver-cache")  # another machine: nothing local
    plan, again = search_tune.run_search(
        experiment_from_dict(data), storage_root=bucket, resume=True
    )
    assert len(read_csv(plan.trials_csv)) == 2 and again.exhausted()


def test_a_study_on_postgresql_is_shared_by_two_searches(
    local_ray: None, tmp_path: Path, postgres_url: str
) -> None:
    """`search.study` names any Optuna storage: two drivers share one study on a real
    PostgreSQL server, each running and counting its own trials."""
    first, _ = search(tiny("pg-a", search={"num_samples": 3, "study": postgres_url}), tmp_path)
    second, _ = search(
        tiny("pg-b", search={"num_samples": 2, "study": postgres_url, "seed": 1}), tmp_path
    )
    assert f"Optuna study: optuna-dashboard {postgres_url}" in first.lines()
    assert first.counts["ok"] == 3 and second.counts["ok"] == 2
    trials = study_trials(postgres_url)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 5
    for name, summary in (("pg-a", first), ("pg-b", second)):
        owned = {
            t.user_attrs["tune_trial_id"] for t in trials if t.user_attrs["owner"].endswith(name)
        }
        assert owned == {r["trial_id"] for r in read_csv(summary.trials_csv)}
