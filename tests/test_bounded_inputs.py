"""Issue 19 without Ray: every bad input is one `error:` line and exit 2, before anything is
written or allocated; names stay one folder; writes are atomic; torn files are found by line.

Numbered cases of the issue: 2 (names), 3 (bounded YAML and counts), 5 (torn files, read
side), 6 (tracebacks become one line), 7 (hangs refused up front), 8 (silent changes), 9
(the smaller items). The Ray side (1, 4, 5 on resume) is tests/test_faults.py.
"""

from __future__ import annotations

import errno
import os
import resource
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_analysis import write_experiment_dir
from test_cli import quick_file

import experiment.files
import run_search
from analysis.export import retrain_command
from analysis.results import load_results
from experiment.config import ConfigError, load_experiment
from experiment.files import write_atomic
from search import guards
from search.plan import plan_search, stored_experiment
from search.torn import read_csv, repair_journal


def one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI: exit 2 and exactly one stderr line, `error: ...`; that line."""
    assert run_search.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ---------------------------------------------------------------- 3: bounded YAML


def alias_bomb(levels: int = 9) -> str:
    lines = ["name: bomb", "space:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_without_expanding_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 1024  # 9^10 values once expanded
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = one_error(capsys, ["search", str(path)])
    assert "values here (each alias expanded)" in line and "line 8:" in line  # a5: 9^6 x's
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 100_000  # it grew past 9.6 GB before
    # through --set too, and an alias that contains itself
    one_error(capsys, ["search", str(quick_file(tmp_path)), "--set", "space=" + "&a [*a]"])
    assert not (tmp_path / "results").exists()


def test_anchors_within_the_limit_still_work(tmp_path: Path) -> None:
    data = yaml.safe_load(run_search.DEFAULT_EXPERIMENT.read_text())
    text = yaml.safe_dump(data).replace("train:\n", "train: &t\n") + "x-copy: *t\n"
    path = tmp_path / "anchored.yaml"
    path.write_text(text.replace("x-copy: *t\n", ""))
    assert load_experiment(path).train.steps == 1500


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: a\ntrain:\n  steps: 5\n  steps: 6\n", "line 4: key 'steps' appears twice"),
        (b"name: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 9)"),
        ("name: d\nspace: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
        ("name: big\nspace: [" + "0," * 150_000 + "0]\n", "bytes; an experiment file is at most"),
        ("name: many\nspace: [" + "0," * 110_000 + "0]\n", "more than 100000 values"),
    ],
)
def test_bad_files_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, words: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for command in ("search", "train"):
        assert words in one_error(capsys, [command, str(path)])


# ---------------------------------------------------------------- 2, 3: names, counts


@pytest.mark.parametrize(
    "name", ["..", ".", "a/b", "..\\x", "tab\there", "nul\x00", " ", "x" * 300]
)
def test_a_name_is_one_folder_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    storage = tmp_path / "store" / "results"
    argv = ["search", str(quick_file(tmp_path)), "--storage", str(storage)]
    assert "error: " in one_error(capsys, [*argv, "--set", f"name={name}"])
    assert list(tmp_path.iterdir()) == [tmp_path / "quick.yaml"]  # nothing written anywhere


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("search.num_samples=1e12", "search.num_samples: at most 100000"),
        ("train.eval_size=0", "train.eval_size: must be >= 2, got 0"),
        ("train.eval_size=-5", "train.eval_size: must be >= 2, got -5"),
        ("dataset.test_size=1", "dataset.test_size: must be >= 2, got 1"),
        ("model.hidden=1000000000", "model.hidden: at most 65536"),
        ("train.batch_size=0", "train.batch_size: must be > 0"),
    ],
)
def test_counts_are_bounded_at_load_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, words: str
) -> None:
    override = override.replace("1e12", "1000000000000")  # a whole number
    for command in ("search", "train"):
        assert words in one_error(capsys, [command, str(quick_file(tmp_path)), "--set", override])


def test_a_grid_too_large_to_list_is_refused_before_optuna(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`num_samples: 1e12` with the grid sampler reached 14 GB in Optuna's GridSampler; the
    count is refused at load time, and a grid over many parameters (2 values each) before
    the sampler is made."""
    argv = ["search", str(quick_file(tmp_path)), "--storage", str(tmp_path / "r")]
    big = ["--set", "search.sampler=grid", "--set", "search.num_samples=1000000000000"]
    assert "search.num_samples: at most 100000" in one_error(capsys, [*argv, *big])
    assert not (tmp_path / "r").exists()
    plan = plan_search(load_experiment(quick_file(tmp_path), ["search.sampler=grid"]))
    with pytest.raises(ConfigError, match="a full grid over 2 parameters has 131072 trials"):
        guards.before_ray(replace(plan, num_samples=2**17), None, None)


# ---------------------------------------------------------------- 6, 7: one line, no hang


def test_resources_no_node_has_and_no_cpus_are_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["search", str(quick_file(tmp_path)), "--storage", str(tmp_path / "r")]
    line = one_error(capsys, [*argv, "--set", "resources.cpu=64", "--num-cpus", "2"])
    assert "resources.cpu=64 per trial, but the largest node of this machine's Ray has 2" in line
    assert "--num-cpus: must be >= 1, got 0" in one_error(capsys, [*argv, "--num-cpus", "0"])
    assert not (tmp_path / "r").exists()


def test_storage_naming_a_file_and_out_paths_that_cannot_be_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = one_error(capsys, ["search", str(quick_file(tmp_path)), "--storage", str(a_file)])
    assert line == f"error: storage: {a_file} is a file, not a folder (see --storage)"
    home = write_experiment_dir(tmp_path / "toy")
    folder = tmp_path / "existing"
    folder.mkdir()
    line = one_error(capsys, ["report", str(home), "--out", str(folder), "--no-png"])
    assert line == f"error: {folder}: is a folder; give a file name"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "existing", "quick.yaml", "toy"]


def test_a_read_only_folder_made_by_the_test_refuses_every_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """EROFS simulated at the lowest write call write_atomic makes (a real read-only mount is
    tests/test_faults.py): one line, and no report.html or temp file left."""
    home = write_experiment_dir(tmp_path / "toy")
    before = sorted(p.name for p in home.iterdir())

    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system", str(args[0]))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiment.files.os, "fsync", read_only)
        line = one_error(capsys, ["report", str(home), "--no-png"])
    assert "Read-only file system" in line
    assert sorted(p.name for p in home.iterdir()) == before  # no report.html, no *.tmp


def test_write_atomic_keeps_the_old_file_whole_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC simulated where a file system with delayed allocation reports it: fsync (the
    real full disk is tests/test_faults.py, on a tmpfs in a user namespace)."""
    path = write_atomic(tmp_path / "trials.csv", "old\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(experiment.files.os, "fsync", full)
    with pytest.raises(OSError) as raised:
        write_atomic(path, "new\n" * 1000)
    assert raised.value.errno == errno.ENOSPC
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["trials.csv"]


# ---------------------------------------------------------------- 5: torn files, read side


def test_torn_and_empty_trials_csv_are_one_line_for_readers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = write_experiment_dir(tmp_path / "toy")
    csv_path = home / "trials.csv"
    whole = csv_path.read_text()
    cut = whole.rstrip("\n")
    cut = cut[: cut.rindex(",", 0, len(cut) - 40)]  # mid-row: a number cut short
    csv_path.write_text(cut)
    _, rows, problems = read_csv(csv_path)
    assert len(problems) == 1 and "is cut short" in problems[0]
    assert len(rows) == whole.count("\n") - 2  # the header and the cut row are not rows
    for command in (["report", str(home), "--no-png"], ["export", str(home)]):
        assert "is cut short; `run_search.py search FILE --resume`" in one_error(capsys, command)
    csv_path.write_text("")
    assert "the file is empty" in one_error(capsys, ["report", str(home), "--no-png"])
    line = one_error(capsys, ["compare", str(home), str(home), "--out", str(tmp_path / "c.html")])
    assert "the file is empty" in line
    csv_path.write_text(whole)
    assert not load_results(home).trials.empty


def test_a_journal_cut_mid_record_is_repaired_and_damage_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "optuna.journal"
    records = b'{"op_code": 0, "worker_id": "a"}\n{"op_code": 4, "worker_id": "a"}\n'
    journal.write_bytes(records + b'{"op_code": 5, "wor')
    [note] = repair_journal(journal)
    assert "cut short (19 bytes); dropped" in note and journal.read_bytes() == records
    assert repair_journal(journal) == []  # whole: untouched
    journal.write_bytes(b'{"op_code": 0}\nnot json\n{"op_code": 4}\n')
    with pytest.raises(ConfigError, match="line 2 is not a journal record, and records follow"):
        repair_journal(journal)


# ---------------------------------------------------------------- 8, 9: said, not silent


def test_search_changes_on_resume_are_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "r" / "quick"
    home.mkdir(parents=True)
    stored = load_experiment(run_search.DEFAULT_EXPERIMENT, ["search.population=8"])
    (home / "experiment.yaml").write_text(yaml.safe_dump(stored.to_dict()))
    given = load_experiment(run_search.DEFAULT_EXPERIMENT, ["search.population=auto"])
    assert stored_experiment(given, str(tmp_path / "r")) == stored
    assert capsys.readouterr().out == ""  # auto resolved to 8 is no change
    changed = load_experiment(
        run_search.DEFAULT_EXPERIMENT,
        ["search.num_samples=32", "search.sampler=random", "search.population=8"],
    )
    stored_experiment(changed, str(tmp_path / "r"))
    out = capsys.readouterr().out
    assert "changes to search.num_samples, search.sampler are ignored" in out


def test_an_unknown_verb_and_a_zero_lambda_low_say_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "unknown command 'frobnicate'" in one_error(capsys, ["frobnicate", "x"])
    assert "(search a file: search a.yaml)" in one_error(capsys, ["a.yaml"])
    line = one_error(
        capsys, ["search", str(quick_file(tmp_path)), "--set", "space.lambda={low: 0, high: 10}"]
    )
    assert "λ range [0, 10] starts at 0" in line and "negative" not in line


def test_retrain_commands_are_shell_quoted(tmp_path: Path) -> None:
    home = write_experiment_dir(tmp_path / "a folder; rm -rf x")
    results = load_results(home)
    command = retrain_command(results, "t1")
    assert f"export '{home}' --pick trial=t1" in command
