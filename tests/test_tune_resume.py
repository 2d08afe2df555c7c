"""`--resume` after the driver is killed (SIGKILL), at three moments of one search.

The search runs in a subprocess (its own Ray). It is killed before its first trial ends, then
mid-search, then during its last trial; each time what it left behind is cleaned up and
`--resume` continues. At the end: as many trials as an uninterrupted run, none finished lost
or trained again, and the Optuna study agrees with trials.csv.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from test_tune import tiny

from search.study import STUDY_NAME, open_storage

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
NUM_SAMPLES = 4  # a full grid of the tiny space (2 x 2), so every sampler runs as many


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


def kill_when(
    command: list[str],
    ready: Callable[[], bool],
    what: str,
    while_stopped: Callable[[], None] | None = None,
) -> None:
    """Run `command`, SIGKILL it (and the Ray processes of its session) once `ready()`; with
    `while_stopped`, first SIGSTOP them all and call it (the search frozen at that moment, on
    a machine of any speed or load)."""
    driver = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its Ray processes share its process group
    )
    try:
        deadline = time.monotonic() + 180
        while not ready():
            assert driver.poll() is None, f"the search ended before it could be killed {what}"
            assert time.monotonic() < deadline, f"never reached the moment {what}"
            time.sleep(0.05)
        if while_stopped is not None:
            os.killpg(driver.pid, signal.SIGSTOP)
            while_stopped()
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # Ray processes the dead driver left


# The driver's kill-and-resume path is the same for every sampler; what differs (a sampler's
# pickled state, its enqueued and refused points) is tested for every row in test_study.py.
# tpe (the default) and gp (the other model-based one) run it here: each costs ~1 min.
@pytest.mark.parametrize("sampler", ["gp", "tpe"])
def test_three_kills_and_resumes_lose_nothing(sampler: str, tmp_path: Path) -> None:
    data = tiny(
        "resume",
        train={"steps": 400, "eval_every": 100},
        search={"num_samples": NUM_SAMPLES, "max_concurrent": 1, "sampler": sampler},
    )
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(data))
    results = tmp_path / "results"
    home = results / "resume"
    csv_path = home / "trials.csv"

    def first_result_only() -> bool:  # a trial has checkpointed, none has finished
        return any(home.glob("trial_*/checkpoint_*")) and not rows_of(csv_path)

    kill_when(search(path, results), first_result_only, "before the first trial ended")
    assert not rows_of(csv_path)
    resume = search(path, results, "--resume")
    finished: dict[str, dict[str, str]] = {}
    for wanted, what in ((2, "mid-search"), (NUM_SAMPLES - 1, "during the last trial")):

        def reached(wanted: int = wanted) -> bool:
            return len(rows_of(csv_path)) >= wanted

        kill_when(resume, reached, what)
        rows = rows_of(csv_path)
        assert wanted <= len(rows) < NUM_SAMPLES, what
        for trial_id, row in finished.items():  # what a kill found stays as it was
            assert rows[trial_id] == row
        finished = rows

    done = subprocess.run(resume, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    after = rows_of(csv_path)
    assert len(after) == NUM_SAMPLES  # what an uninterrupted run of this file makes
    assert {r["status"] for r in after.values()} == {"ok"}
    for trial_id, row in finished.items():  # recorded before a kill: never written again
        assert after[trial_id] == row  # (a trial trained again would have a new ended_at)
    for row in after.values():
        assert row["step"] == "400" and row["restored_from_step"] in ("0", "100", "200", "300")

    study = optuna.load_study(
        study_name=STUDY_NAME, storage=open_storage(str(home / "optuna.journal"))
    )
    trials = study.get_trials()
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["tune_trial_id"] for t in complete) == sorted(after)
    for trial in complete:
        row = after[trial.user_attrs["tune_trial_id"]]
        assert trial.values == [pytest.approx(float(row["nll"])), pytest.approx(float(row["mi"]))]
