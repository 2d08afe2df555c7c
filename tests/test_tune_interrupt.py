"""Ctrl-C (SIGINT) and SIGTERM stop a search cleanly; a moved folder resumes; Ray reads it.

Each search runs as a subprocess (its own Ray), stopped by a signal once a trial has finished
and another is training. The driver must exit with 128 + the signal, one `interrupted:` line
and no traceback, leave the running trial RUNNING in Optuna (never `orphaned`) and delete no
checkpoint; `--resume` (after moving the folder, for SIGINT) ends with exactly `num_samples`
rows, those written before the signal byte for byte unchanged, the study's COMPLETE trials
the rows of trials.csv. Then Ray's own readers: `ExperimentAnalysis`, `ResultGrid` (through
`Tuner.restore`, as a Ray user would), every checkpoint they name present. SIGKILL:
tests/test_tune_resume.py and tests/test_tune_population.py.
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from ray import tune
from test_tune import study_trials, tiny
from test_tune_resume import ROOT, rows_of, search

from search.members import member_key
from search.plan import JOURNAL_FILE as JOURNAL
from search.study import STUDY_NAME, open_storage
from search.tune import run_trial

pytestmark = pytest.mark.slow
NUM_SAMPLES = 4
COMPLETE, RUNNING = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING


def raw_rows(path: Path) -> dict[str, str]:
    """trial_id -> the row's line as written (the bytes a resume must not change)."""
    lines = path.read_text().splitlines()[1:]
    return {line.split(",", 1)[0]: line for line in lines}


def stop_when_training(command: list[str], home: Path, signum: int) -> subprocess.Popen:
    """Run `command`; send `signum` to the driver alone once a row is written and a trial
    has checkpointed past it; wait for the driver to end."""
    driver = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    while not (rows_of(home / "trials.csv") and len(list(home.glob("trial_*/checkpoint_*"))) > 5):
        assert driver.poll() is None, "the search ended before it could be interrupted"
        assert time.monotonic() < deadline, "never reached a trial training after a row"
        time.sleep(0.05)
    driver.send_signal(signum)
    driver.out, driver.err = driver.communicate(timeout=120)  # type: ignore[attr-defined]
    return driver


def check_interrupted(driver: subprocess.Popen, signum: int, home: Path) -> dict[str, str]:
    out, err = driver.out, driver.err  # type: ignore[attr-defined]
    assert driver.returncode == 128 + signum, out + err
    assert "Traceback" not in err and "Traceback" not in out
    done = len(rows_of(home / "trials.csv"))
    line = next(line for line in out.splitlines() if line.startswith("interrupted:"))
    assert line.startswith(f"interrupted: {done} of {NUM_SAMPLES} finished, `run_search.py")
    assert line.endswith("--resume` continues")
    assert 0 < done < NUM_SAMPLES
    trials = study_trials(str(home / "optuna.journal"))
    assert [t for t in trials if t.state == RUNNING]  # kept for --resume, not `orphaned`
    assert not [t for t in trials if t.user_attrs.get("status") == "orphaned"]
    named = [c for t in tune.ExperimentAnalysis(str(home)).trials for c in [t.checkpoint] if c]
    assert named and all(Path(c.path).is_dir() for c in named)  # nothing pruned
    return raw_rows(home / "trials.csv")


def check_resumed(home: Path, before: dict[str, str]) -> None:
    after = raw_rows(home / "trials.csv")
    assert len(after) == NUM_SAMPLES
    assert {key: after[key] for key in before} == before  # byte for byte
    rows = rows_of(home / "trials.csv")
    assert {row["status"] for row in rows.values()} == {"ok"}
    trials = study_trials(str(home / "optuna.journal"))
    complete = [t for t in trials if t.state == COMPLETE]
    told = [member_key(t.user_attrs["tune_trial_id"], t.user_attrs.get("member")) for t in complete]
    assert sorted(told) == sorted(rows)  # the study's COMPLETE trials = trials.csv
    assert not [t for t in trials if t.state == RUNNING]
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(str(home / JOURNAL)))
    assert study.metric_names == ["nll", "mi"]  # optuna-dashboard's axis labels
    assert study.user_attrs["directions"] == {"nll": "minimize", "mi": "maximize"}


def check_ray_reads(home: Path) -> None:
    """Ray's tools on the finished search: no NaN, the best is trials.csv's best, every
    checkpoint they name exists."""
    rows = rows_of(home / "trials.csv")
    best_nll = min(float(row["nll"]) for row in rows.values())
    analysis = tune.ExperimentAnalysis(str(home))
    best = analysis.get_best_trial("nll", "min")
    assert best is not None and best.last_result["nll"] == pytest.approx(best_nll)
    for trial in analysis.trials:
        assert math.isfinite(trial.last_result["nll"]) and math.isfinite(trial.last_result["mi"])
        checkpoint = analysis.get_best_checkpoint(trial, "nll", "min")
        assert checkpoint is not None and Path(checkpoint.path).is_dir()
    grid = tune.Tuner.restore(str(home), trainable=run_trial).get_results()
    assert grid.get_best_result().metrics["nll"] == pytest.approx(best_nll)  # no arguments
    frame = grid.get_dataframe(filter_metric="nll", filter_mode="min")
    assert len(frame) == len(analysis.trials) and frame["nll"].notna().all()
    for result in grid:
        assert all(Path(c.path).is_dir() for c, _ in result.best_checkpoints)


def test_sigint_then_move_the_folder_then_resume(tmp_path: Path) -> None:
    data = tiny(
        "quick",
        train={"steps": 400, "eval_every": 100},
        search={"num_samples": NUM_SAMPLES, "max_concurrent": 1, "sampler": "tpe"},
    )
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(data))
    results, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    driver = stop_when_training(search(path, results), results / "quick", signal.SIGINT)
    before = check_interrupted(driver, signal.SIGINT, results / "quick")

    elsewhere.mkdir()
    shutil.move(str(results / "quick"), str(elsewhere / "quick"))
    done = subprocess.run(
        search(path, elsewhere, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (results / "quick").exists()  # no new journal, rows or trials at the old path
    check_resumed(elsewhere / "quick", before)
    check_ray_reads(elsewhere / "quick")


def test_sigterm_during_a_rolling_population_then_resume(tmp_path: Path) -> None:
    data = tiny(
        "pop",
        train={"steps": 400, "eval_every": 100},
        search={
            "num_samples": NUM_SAMPLES,
            "max_concurrent": 1,
            "sampler": "tpe",
            "population": 2,
        },
    )
    path = tmp_path / "pop.yaml"
    path.write_text(yaml.safe_dump(data))
    results = tmp_path / "results"
    driver = stop_when_training(search(path, results), results / "pop", signal.SIGTERM)
    before = check_interrupted(driver, signal.SIGTERM, results / "pop")
    done = subprocess.run(
        search(path, results, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check_resumed(results / "pop", before)
    check_ray_reads(results / "pop")
