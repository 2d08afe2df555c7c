"""Torn files: a journal or trials.csv cut short (a full disk, a copy stopped midway, a crash)
is detected, and the driver repairs it before it appends anything; readers refuse it by line.

The journal (`optuna.journal`) is appended one JSON record per line, so only its last record
can be cut: `repair` drops an unterminated or unreadable last record and says so. A bad
record with good ones after it is not a cut but damage, and is refused. trials.csv is
rewritten whole as trials finish; a row that does not parse (too few or too many cells, an
unknown status, no newline at the end of the file) is dropped by `repair` and derived again
from Tune's results as the search runs and ends (`search.trials.Ledger.end`).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from experiment.config import ConfigError
from experiment.files import write_atomic
from experiment.status import ROW_STATUSES
from search.plan import JOURNAL_FILE, SearchPlan


def repair(plan: SearchPlan) -> list[str]:
    """Make the driver's own files and Tune's saved state whole before anything appends to
    them; notes for people."""
    notes = [] if plan.is_remote else tune_state(Path(plan.experiment_path))
    journal = plan.local_dir / JOURNAL_FILE
    if plan.experiment.search.study is None and journal.is_file():
        notes += repair_journal(journal)
    if plan.trials_csv.is_file():
        fields, rows, problems = read_csv(plan.trials_csv)
        if problems:
            if fields:
                write_atomic(plan.trials_csv, _csv_text(fields, rows))
            else:
                plan.trials_csv.unlink()
            for problem in problems:
                notes.append(
                    f"note: {plan.trials_csv}: {problem}; dropped, and derived again from "
                    "Tune's results"
                )
    return notes


def tune_state(folder: Path) -> list[str]:
    """Move a cut `experiment_state-*.json` of Tune's aside (Tune writes it in place, so a
    full disk can cut it): Tune then restores the newest whole one. With none left, its
    `tuner.pkl` goes aside too, and the search starts Tune anew over its study."""
    states = sorted(folder.glob("experiment_state-*.json"))
    notes = []
    while states and not _json_file(states[-1]):
        cut = states.pop()
        cut.rename(cut.with_name(cut.name + ".torn"))
        notes.append(f"note: {cut}: Tune's saved state was cut short; moved aside to *.torn")
    tuner = folder / "tuner.pkl"
    if notes and not states and tuner.is_file():
        tuner.rename(tuner.with_name(tuner.name + ".torn"))
    return notes


def repair_journal(path: Path) -> list[str]:
    """Drop a cut last record of an Optuna journal file (a note), or refuse damage."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    keep = len(data)
    dropped = 0
    if lines[-1]:  # no newline after the last record: it was being written
        keep -= len(lines[-1])
        dropped = len(lines[-1])
    complete = lines[:-1]
    for number, line in enumerate(complete, start=1):
        if _record(line):
            continue
        if number < len(complete):  # a good record follows: damage, not a cut
            raise ConfigError(
                f"{path}: line {number} is not a journal record, and records follow it; "
                "the study cannot be read safely (restore the file, or move it aside)"
            )
        keep -= len(line) + 1
        dropped += len(line) + 1
    if not dropped:
        return []
    os.truncate(path, keep)
    return [f"note: {path}: its last record was cut short ({dropped} bytes); dropped"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """(header, rows that parse, one line per row that does not) of a trials.csv."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return [], [], ["the file is empty"]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        fields = next(reader)
        entries = [(reader.line_num, cells) for cells in reader if cells]
    except csv.Error as error:
        return [], [], [f"not CSV ({error})"]
    if "trial_id" not in fields or "status" not in fields:
        return [], [], ["its first line is not a trials.csv header"]
    rows, problems = [], []
    for i, (line, cells) in enumerate(entries):
        row = dict(zip(fields, cells, strict=False))
        unterminated = i == len(entries) - 1 and not text.endswith("\n")
        if len(cells) != len(fields) or unterminated:
            problems.append(f"line {line} (trial {row.get('trial_id', '?')}) is cut short")
        elif row["status"] not in ROW_STATUSES:
            problems.append(f"line {line} (trial {row['trial_id']}): unknown status")
        else:
            rows.append(row)
    return fields, rows, problems


def _json_file(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
        return True
    except (ValueError, UnicodeDecodeError):
        return False


def _record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _csv_text(fields: list[str], rows: list[dict[str, str]]) -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
