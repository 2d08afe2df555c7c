"""`--resume` after the driver is killed (SIGKILL): nothing finished is lost or trained again.

The search runs in a subprocess (its own Ray); once trials.csv shows finished trials the
driver is killed, what it left behind is cleaned up, and `--resume` continues the search.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from test_tune import tiny

from search.tune import STUDY_NAME

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
NUM_SAMPLES = 6


def rows_of(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["trial_id"]: row for row in csv.DictReader(handle)}


def search(path: Path, storage: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "run_search.py"),
        "search",
        str(path),
        "--storage",
        str(storage),
        "--num-cpus",
        "2",
        *extra,
    ]


def test_resume_after_sigkill_keeps_finished_trials(tmp_path: Path) -> None:
    data = tiny(
        "resume",
        train={"steps": 300, "eval_every": 100},
        search={"num_samples": NUM_SAMPLES, "sampler": "tpe"},
    )
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(data))
    home = tmp_path / "results" / "resume"
    driver = subprocess.Popen(
        search(path, tmp_path / "results"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its Ray processes share its process group
    )
    try:
        deadline = time.monotonic() + 180
        while len(rows_of(home / "trials.csv")) < 2:
            assert driver.poll() is None, "the search ended before it could be interrupted"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # Ray processes the dead driver left
    before = rows_of(home / "trials.csv")
    assert 2 <= len(before) < NUM_SAMPLES

    done = subprocess.run(
        search(path, tmp_path / "results", "--resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = rows_of(home / "trials.csv")
    assert len(after) == NUM_SAMPLES and {r["status"] for r in after.values()} == {"ok"}
    for trial_id, row in before.items():
        kept = after[trial_id]
        assert {k: kept[k] for k in ("nll", "mi", "elbo", "objective.params.alpha")} == {
            k: row[k] for k in ("nll", "mi", "elbo", "objective.params.alpha")
        }
        # not trained again: each evaluation step was reported once (a trial that finished
        # after the last snapshot may report its final result once more, from its checkpoint)
        lines = (home / f"trial_{trial_id}" / "result.json").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in lines]
        assert steps[:3] == [100, 200, 300] and set(steps[3:]) <= {300}
        assert kept["restored_from_step"] in ("0", "300")

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{home / 'optuna.db'}")
    trials = study.get_trials()
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    complete = {
        t.user_attrs["tune_trial_id"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert complete == set(after)
