"""Population trials through Ray Tune: `--resume` after SIGKILLs, and a real search.

Each member of a population trial is its own Optuna trial, its own row of trials.csv and its
own curve; a search killed while a population trains resumes every member from the
population's checkpoint and loses no finished member. The kill test runs first: its searches
are subprocesses with their own Ray, started before this module's own Ray.
"""

from __future__ import annotations

import logging
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import ray
import yaml
from test_tune import read_csv, search, study_trials, tiny
from test_tune_resume import ROOT, kill_when, rows_of
from test_tune_resume import search as search_command

from analysis.results import load_curves, load_results

pytestmark = pytest.mark.slow
NUM_SAMPLES = 5
POPULATION = 3  # 5 members: a population of 3, then one of 2


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def population_search(name: str, refill: bool = True, **train: int) -> dict:
    return tiny(
        name,
        train={"steps": 100, "eval_every": 50, **train},
        search={
            "num_samples": NUM_SAMPLES,
            "max_concurrent": 1,
            "sampler": "tpe",
            "population": POPULATION,
            "refill": refill,
        },
    )


@pytest.mark.parametrize("refill", [True, False], ids=["rolling", "fixed"])
def test_kills_during_each_population_lose_no_member(tmp_path: Path, refill: bool) -> None:
    """SIGKILL of the driver while members train, twice, then `--resume`: exactly
    `num_samples` members, none lost or trained again (a rolling trial's slots, or a fixed
    population of 3 then one of 2)."""
    path = tmp_path / "resume.yaml"
    search_file = population_search("resume", refill, steps=400, eval_every=100)
    path.write_text(yaml.safe_dump(search_file))
    results = tmp_path / "results"
    home = results / "resume"
    csv_path = home / "trials.csv"

    def first_population_checkpointed() -> bool:
        return any(home.glob("trial_*/checkpoint_*")) and not rows_of(csv_path)

    kill_when(search_command(path, results), first_population_checkpointed, "in population 1")
    assert not rows_of(csv_path)
    resume = search_command(path, results, "--resume")

    def second_population_started() -> bool:
        done = rows_of(csv_path)
        enough = len(done) >= 2 if refill else len(done) == POPULATION  # rolling: one by one
        return enough and len(list(home.glob("trial_*/checkpoint_*"))) > 4

    kill_when(resume, second_population_started, "in population 2")
    first = rows_of(csv_path)
    assert len(first) >= 2 if refill else len(first) == POPULATION
    if not refill:
        assert {row["restored_from_step"] for row in first.values()} != {"0"}  # not redone
    done = subprocess.run(resume, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = rows_of(csv_path)
    assert len(after) == NUM_SAMPLES and {r["status"] for r in after.values()} == {"ok"}
    for key, row in first.items():
        assert after[key] == row  # a finished member is never trained or written again
    assert {row["step"] for row in after.values()} == {"400"}
    trials = study_trials(str(home / "optuna.journal"))
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    told = {f"{t.user_attrs['tune_trial_id']}#{t.user_attrs['member']}" for t in complete}
    assert len(complete) == NUM_SAMPLES and told == set(after)  # each member told once
    for trial in trials:  # asked after Tune's last snapshot by a killed driver: never trained
        if trial not in complete:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert trial.user_attrs["status"] == "orphaned"


@pytest.mark.parametrize("refill", [True, False], ids=["rolling", "fixed"])
def test_each_member_is_a_row_a_study_trial_and_a_curve(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], refill: bool
) -> None:
    summary, study = search(population_search("pop", refill), tmp_path)
    out = capsys.readouterr().out
    assert "note: search.population: 3 members per trial" in out
    if refill:  # one Tune trial (max_concurrent 1) whose 3 slots train all 5 members
        assert out.count("each slot refilled as its member ends") == 1
    else:
        assert out.count("members together") == 2  # a line as each population starts
    assert (
        sum(line.startswith("[") and "/5] " in line and "#" in line for line in out.splitlines())
        == 5
    )
    home = tmp_path / "pop"
    rows = {row["trial_id"]: row for row in read_csv(home / "trials.csv")}
    assert len(rows) == NUM_SAMPLES and {r["status"] for r in rows.values()} == {"ok"}
    populations = {key.partition("#")[0] for key in rows}
    assert len(populations) == (1 if refill else 2)  # Tune trials
    numbers = ["0", "1", "2", "3", "4"] if refill else ["0", "0", "1", "1", "2"]
    assert sorted(key.partition("#")[2] for key in rows) == numbers

    trials = study_trials(study)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for trial in trials:
        key = f"{trial.user_attrs['tune_trial_id']}#{trial.user_attrs['member']}"
        row = rows[key]
        assert trial.values == [pytest.approx(float(row["nll"])), pytest.approx(float(row["mi"]))]
        for name, value in trial.params.items():
            assert float(row[name]) == pytest.approx(value)
    assert len({r["objective.params.alpha"] for r in rows.values()}) == NUM_SAMPLES

    curves = load_curves(home)
    assert set(curves["trial_id"]) == set(rows)
    assert sorted(curves.groupby("trial_id")["step"].apply(tuple).unique()) == [(50, 100)]
    for key, row in rows.items():
        last = curves[(curves["trial_id"] == key) & (curves["step"] == 100)]
        assert float(last["nll"].iloc[0]) == pytest.approx(float(row["nll"]))
    points = load_results(home).finished
    assert len(points) == NUM_SAMPLES and points["nll"].map(math.isfinite).all()
    assert summary is not None
