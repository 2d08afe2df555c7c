"""Analysis: Pareto fronts, the HTML dashboard, and exports that load as experiments."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.export import export_trials
from analysis.pareto import pareto_mask
from analysis.report import write_report
from analysis.results import ResultsError, load_results
from run_search import main as cli
from search.config import experiment_from_dict, load_experiment


def test_pareto_mask_min_max() -> None:
    values = np.array([[1.0, 1.0], [2.0, 3.0], [1.5, 0.5], [3.0, 3.0], [0.5, 0.2], [np.nan, 9]])
    # minimise column 0, maximise column 1
    assert pareto_mask(values, ["min", "max"]).tolist() == [True, True, False, False, True, False]
    assert pareto_mask(values, ["min", "min"]).tolist() == [False, False, False, False, True, False]


def test_equal_points_do_not_dominate_each_other() -> None:
    assert pareto_mask(np.array([[1.0, 2.0], [1.0, 2.0]]), ["min", "max"]).all()


@pytest.fixture
def experiment_dir(tmp_path: Path) -> Path:
    experiment = experiment_from_dict(
        {
            "name": "toy",
            "objective": {"preset": "beta-vae", "beta": 1.0},
            "train": {"steps": 10, "eval_every": 5},
        }
    )
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(experiment.to_dict()))
    rows = [
        ("t1", "ok", 0.5, 1.40, 0.9),
        ("t2", "ok", 1.0, 1.38, 0.6),
        ("t3", "ok", 4.0, 1.35, 0.1),
        ("t4", "ok", 2.0, 1.50, 0.5),  # dominated by t2
        ("t5", "diverged", 0.1, math.nan, math.nan),
    ]
    frame = pd.DataFrame(rows, columns=["trial_id", "status", "objective.params.beta", "nll", "mi"])
    frame["mi_cap"] = math.log(2000)
    frame.to_csv(tmp_path / "trials.csv", index=False)
    return tmp_path


def test_results_know_the_searched_keys_and_finished_trials(experiment_dir: Path) -> None:
    results = load_results(experiment_dir)
    assert results.searched == ["objective.params.beta"]
    assert list(results.finished["trial_id"]) == ["t1", "t2", "t3", "t4"]


def test_report_is_one_html_file_with_the_front(experiment_dir: Path) -> None:
    path = write_report(experiment_dir)
    text = path.read_text()
    assert path.name == "report.html"
    assert "Pareto front" in text and "capped at log N" in text
    table = text.split("<h2>Pareto set</h2>")[1]
    assert "t1" in table and "t2" in table and "t3" in table and "t4" not in table


def test_export_defaults_to_the_pareto_set_and_re_loads(experiment_dir: Path) -> None:
    paths = export_trials(experiment_dir)
    assert sorted(p.stem for p in paths) == ["toy-t1", "toy-t2", "toy-t3"]
    experiment = load_experiment(experiment_dir / "exports" / "toy-t3.yaml")
    assert experiment.objective.params == {"beta": 4.0}
    assert experiment.name == "toy-t3" and experiment.space == {}


def test_cli_report_and_export_and_their_errors(experiment_dir: Path, capsys) -> None:
    assert cli(["report", str(experiment_dir)]) == 0
    assert cli(["export", str(experiment_dir), "--trial", "t4"]) == 0
    assert "toy-t4.yaml" in capsys.readouterr().out
    assert cli(["export", str(experiment_dir), "--trial", "nope"]) == 2
    assert "no trial 'nope'" in capsys.readouterr().err
    assert cli(["report", str(experiment_dir / "missing")]) == 2


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="trials.csv: not found"):
        load_results(tmp_path)
