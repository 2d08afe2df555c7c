"""The command line's answers to bad input, before anything heavy starts (no Ray here)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

import experiment.config
import run_search
from search.feasibility import refusal
from training.trainer import Trainer


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quick_file(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(run_search.DEFAULT_EXPERIMENT.read_text())
    data.update(changes)
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_address_nothing_answers_is_one_error_line_in_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    argv = ["search", str(quick_file(tmp_path)), "--storage", str(tmp_path / "r")]
    started = time.monotonic()
    assert run_search.main([*argv, "--address", address]) == 2
    assert time.monotonic() - started < 20
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --address {address}: nothing answers")
    assert not (tmp_path / "r").exists()  # nothing written for a search that never started


def test_ray_address_from_the_environment_is_checked_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    argv = ["search", str(quick_file(tmp_path)), "--storage", str(tmp_path / "r")]
    assert run_search.main(argv) == 2
    assert "nothing answers" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "~\n"])
def test_an_empty_experiment_file_is_an_error_not_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    for command in ("search", "train"):
        assert run_search.main([command, str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: {path}: the file is empty; an experiment file needs at least a name"
        ]


def test_the_demo_takes_options_without_a_sub_command(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_search(args: object) -> int:
        seen["args"] = args
        return 0

    monkeypatch.setattr(run_search, "main_search", fake_search)
    assert run_search.main(["--set", "train.steps=10", "--storage", "/tmp/x", "--resume"]) == 0
    args = seen["args"]
    assert args.experiment == run_search.DEFAULT_EXPERIMENT
    assert args.overrides == ["train.steps=10"] and args.storage == "/tmp/x" and args.resume
    assert run_search.main([]) == 0 and seen["args"].overrides == []


def test_a_trial_compiles_its_objective_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver compiles each suggestion once (to refuse it or not); the trial compiles its
    point once, and the trainer uses that `Compiled` (Experiment.compiled) as it is."""
    calls = []
    compile_objective = experiment.config.compile_objective

    def counting(objective: object) -> object:
        calls.append(objective)
        return compile_objective(objective)

    monkeypatch.setattr(experiment.config, "compile_objective", counting)
    base = experiment.config.load_experiment(
        run_search.DEFAULT_EXPERIMENT,
        ["train.steps=2", "train.eval_every=2", "dataset.test_size=8"],
    )
    assert len(calls) == 1  # the file, validated at load time
    point = {"objective.params.beta": 0.5, "objective.params.lambda": 20.0}
    assert refusal(base, point) is None
    assert len(calls) == 2  # the driver, once per suggestion
    trial = base.with_values(point)  # the trial: its point, compiled once
    trainer = Trainer(trial, threads=1)
    trainer.train_steps(2)
    assert len(calls) == 3 and trainer.members[0].experiment.compiled is trial.compiled


def test_suite_is_a_sub_command_of_the_one_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run_search.py suite` hands its arguments to analysis.suite: a missing folder is one
    error line and exit 2, as every sub-command's bad input."""
    code = run_search.main(["suite", "--tables", str(tmp_path / "no-such-suite")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "no-such-suite" in err
