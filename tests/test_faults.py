"""Issue 19 with real faults: two real drivers on one folder, a driver killed mid-write with
its journal and trials.csv torn, a full disk (a small tmpfs in a user namespace, mounted
without root), a read-only mount. After each `--resume`: exactly `num_samples` rows, equal
to the study's COMPLETE trials; no finished trial lost or changed.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import require_system
from test_tune import tiny
from test_tune_resume import kill_when, rows_of, search

from search.study import STUDY_NAME, open_storage

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PIPES: dict = {"cwd": ROOT, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
NUM_SAMPLES = 5


def complete_keys(home: Path) -> list[str]:
    """The trials.csv keys of the study's COMPLETE trials (`id`, or `id#k` for members)."""
    study = optuna.load_study(
        study_name=STUDY_NAME, storage=open_storage(str(home / "optuna.journal"))
    )
    keys = []
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        member = trial.user_attrs.get("member")
        keys.append(trial.user_attrs["tune_trial_id"] + ("" if member is None else f"#{member}"))
    return sorted(keys)


def experiment_file(tmp_path: Path, name: str, steps: int, **search_keys: object) -> Path:
    data = tiny(
        name,
        train={"steps": steps, "eval_every": 100},
        search={
            "num_samples": NUM_SAMPLES,
            "max_concurrent": 1,
            "sampler": "random",
            **search_keys,
        },
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_drivers_never_both_train_and_torn_files_are_repaired(tmp_path: Path) -> None:
    """Case 1 (a second driver meets the lock, readers still read) and case 5 (a kill leaves
    the journal's last record and trials.csv's last row cut; `--resume` repairs both)."""
    path = experiment_file(tmp_path, "two", 1000)  # a trial long enough to meet
    results = tmp_path / "results"
    home = results / "two"
    journal, trials = home / "optuna.journal", home / "trials.csv"
    second: dict[str, subprocess.CompletedProcess] = {}

    def second_driver_and_reader() -> None:  # side by side, the first driver frozen
        report = [sys.executable, "run_search.py", "report", str(home), "--no-png"]
        runs = {
            "resume": subprocess.Popen(search(path, results, "--resume"), **PIPES),
            "report": subprocess.Popen(report, **PIPES),
        }
        for what, run in runs.items():
            out, err = run.communicate(timeout=120)
            second[what] = subprocess.CompletedProcess(run.args, run.returncode, out, err)

    first_row = lambda: bool(rows_of(trials))  # noqa: E731
    kill_when(search(path, results), first_row, "after its first trial", second_driver_and_reader)
    refused = second["resume"]
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {home}: another driver is running this search (host ")
    assert f"host {socket.gethostname()} pid " in line and " since 20" in line
    assert refused.stdout.count("resuming") == 0  # refused before announcing anything
    assert second["report"].returncode == 0, second["report"].stderr

    finished = rows_of(trials)
    assert 1 <= len(finished) < NUM_SAMPLES
    whole = journal.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    journal.write_bytes(whole + last[: len(last) // 2])  # killed in the middle of an append
    text = trials.read_text()
    trials.write_text(text[: text.rindex(",", 0, len(text) - 60)])  # the last row cut short
    cut = list(rows_of(trials))[-1]

    done = subprocess.run(
        search(path, results, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"note: {journal}: its last record was cut short" in done.stdout
    assert (
        f"note: {trials}: line " in done.stdout
        and "derived again from Tune's results" in done.stdout
    )
    after = rows_of(trials)
    assert len(after) == NUM_SAMPLES and {r["status"] for r in after.values()} == {"ok"}
    for trial_id, row in finished.items():
        if trial_id != cut:
            assert after[trial_id] == row  # never trained or written again
    assert float(after[cut]["nll"]) == pytest.approx(float(finished[cut]["nll"]), rel=1e-6)
    assert complete_keys(home) == sorted(after)
    assert journal.read_bytes().startswith(whole)


FULL_DISK = r"""
set -u
mount -t tmpfs -o size=64m tmpfs "$MNT"
python=$1; file=$2; copy=$3
"$python" run_search.py search "$file" --storage "$MNT/r" --num-cpus 2 \
  >"$copy.1.out" 2>"$copy.1.err" &
driver=$!
for i in $(seq 1200); do
  ls "$MNT"/r/*/trial_*/checkpoint_* >/dev/null 2>&1 && break; sleep 0.05
done
dd if=/dev/zero of="$MNT/filler" bs=64k 2>/dev/null
wait $driver; echo $? >"$copy.1.rc"
find "$MNT/r" -name '*.tmp' >"$copy.tmp-files"
rm "$MNT/filler"
"$python" run_search.py search "$file" --storage "$MNT/r" --num-cpus 2 --resume >"$copy.2.out" 2>&1
echo $? >"$copy.2.rc"
cp -r "$MNT/r" "$copy"
mount --bind "$copy" "$copy" && mount -o remount,bind,ro "$copy"
"$python" run_search.py report "$copy/full" --out "$copy/full/again.html" --no-png 2>"$copy.3.err"
echo $? >"$copy.3.rc"
"""


def user_namespaces() -> bool:
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt 2>/dev/null || exit 1"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_a_full_disk_stops_the_search_in_one_line_and_resume_completes_it(tmp_path: Path) -> None:
    """Case 4: a 64 MB tmpfs filled while the search trains; then a read-only mount (case 6)."""
    have = shutil.which("unshare") is not None and user_namespaces()
    require_system("unprivileged user and mount namespaces (unshare -rm)", "util-linux", have)
    path = experiment_file(tmp_path, "full", 300, population=2, max_concurrent=2)
    mnt, copy = tmp_path / "mnt", tmp_path / "copy"
    mnt.mkdir()
    script = tmp_path / "full-disk.sh"
    script.write_text(FULL_DISK)
    command = ["unshare", "-rm", "bash", str(script), sys.executable, str(path), str(copy)]
    started = time.monotonic()
    env = {**os.environ, "MNT": str(mnt)}
    subprocess.run(command, cwd=ROOT, env=env, timeout=400, check=True)
    assert time.monotonic() - started < 300

    err = Path(f"{copy}.1.err").read_text().strip().splitlines()
    assert Path(f"{copy}.1.rc").read_text().strip() == "2"
    assert [line for line in err if "error" in line.lower()] == err[-1:], err  # no traceback
    assert "No space left on device; the search stopped" in err[-1] and "--resume" in err[-1]
    assert Path(f"{copy}.tmp-files").read_text() == ""  # no half-written temp file left
    assert Path(f"{copy}.2.rc").read_text().strip() == "0", Path(f"{copy}.2.out").read_text()
    home = copy / "full"
    with (home / "trials.csv").open(newline="") as handle:
        rows = {row["trial_id"]: row for row in csv.DictReader(handle)}
    assert len(rows) == NUM_SAMPLES and {r["status"] for r in rows.values()} == {"ok"}
    assert complete_keys(home) == sorted(rows)

    [line] = Path(f"{copy}.3.err").read_text().strip().splitlines()
    assert Path(f"{copy}.3.rc").read_text().strip() == "2"
    assert line.startswith("error: ") and "Read-only file system" in line
