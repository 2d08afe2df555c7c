"""Where an experiment's files are read from: a local folder, or a storage URI.

A search writes `<storage>/<name>/`: `experiment.yaml`, `trials.csv` (rewritten atomically as
trials finish) and, per trial, Tune's `trial_<id>/result.json` (one JSON object per reported
evaluation, appended as the trial runs). For a URI (s3://, gs://, file://) the files analysis
reads are copied into a local cache first (`search.storage`, pyarrow's filesystems), fresh on
every call, so a dashboard of a running search shows what the bucket holds now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search import storage
from search.torn import read_csv

RESULT_FILE = "result.json"  # Tune's per-trial results, one JSON object per line
TRIAL_PREFIX = "trial_"  # search.checkpoints.trial_dirname


class ResultsError(ValueError):
    """An experiment directory that is missing or holds no usable results."""


def local_copy(location: str | Path) -> Path:
    """A local folder holding the experiment's files: the folder itself, or a fresh cache of
    a URI's `experiment.yaml`, `trials.csv` and every `trial_*/result.json`."""
    text = str(location)
    if not storage.is_remote(text):
        return Path(text).expanduser()
    import pyarrow.fs

    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    cache = storage.CACHE / "analysis" / f"{text.rstrip('/').rsplit('/', 1)[-1]}-{digest}"
    try:
        filesystem, inner = pyarrow.fs.FileSystem.from_uri(text)
        for name in ("experiment.yaml", "trials.csv"):
            storage.download(storage.join(text, name), cache / name)
        listing = filesystem.get_file_info(pyarrow.fs.FileSelector(inner, allow_not_found=True))
    except (OSError, ValueError) as error:  # pyarrow: unknown scheme, unreachable bucket
        raise ResultsError(f"{text}: cannot read ({error})") from None
    for info in listing:
        if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith(TRIAL_PREFIX):
            remote = storage.join(text, info.base_name, RESULT_FILE)
            storage.download(remote, cache / info.base_name / RESULT_FILE)
    return cache


def result_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(trial id, its result.json) for every trial folder that has one, by name."""
    for folder in sorted(directory.glob(f"{TRIAL_PREFIX}*")):
        path = folder / RESULT_FILE
        if path.is_file():
            yield folder.name.removeprefix(TRIAL_PREFIX), path


def check_trials_csv(path: Path) -> None:
    """A ResultsError naming the first row of a trials.csv that does not parse (cut short by
    a copy or a crash): its numbers would be read wrong. The driver repairs the file."""
    _, _, problems = read_csv(path)
    if problems:
        raise ResultsError(
            f"{path}: {problems[0]}; `run_search.py search FILE --resume` derives it again "
            "from Tune's results"
        )


def read_results(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a result.json; a line still being written (no newline yet, or cut
    short) is skipped, so a file read during a search never fails."""
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
