"""Seeded replicates (analysis/replicate.py): a tiny replicate runs, a second start re-trains
nothing, an interrupted run resumes from its checkpoint to the same final numbers, and the
tables' error bars and verdicts follow from the runs' own numbers. The shipped replicate
files load, and one run of each of their groups trains a few steps."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import write_idx_dir

from analysis.replicate import load_replicate, main, run_all
from analysis.replicate_plot import figure1_plot, figure2_plot
from analysis.replicate_tables import figure2_verdicts, mean_se, write_tables

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = [
    "train.steps=4",
    "train.eval_every=2",
    "model.hidden=8",
    "dataset.train_size=200",
    "dataset.test_size=40",
    "train.nll_train_size=20",
    "train.iw_samples=3",
]


def write_file(tmp_path: Path) -> Path:
    base = yaml.safe_load((CONFIGS / "paper-4.1-mog-cpu.yaml").read_text())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {
        "replicate": "tiny",
        "seeds": [0, 1],
        "table": "figure2",
        "set": {k: yaml.safe_load(v) for k, v in (i.split("=") for i in TINY)}
        | {"storage": str(tmp_path)},
        "groups": [
            {"name": "elbo", "file": "base.yaml", "grid": {"objective.params.beta": [1.0]}},
            {
                "name": "beta",
                "file": "base.yaml",
                "grid": {"objective.params.beta": [0.5]},
                "baseline": "elbo",
            },
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_replicate_runs_skips_what_is_done_and_resumes_what_was_cut(tmp_path: Path) -> None:
    path = write_file(tmp_path)
    assert main([str(path)]) == 0
    replicate = load_replicate(path)
    assert [r.state() for r in replicate.runs] == ["done"] * 4
    assert [r.experiment.objective.params["beta"] for r in replicate.runs] == [1.0, 1.0, 0.5, 0.5]
    stamps = [
        (r.directory / "checkpoint" / "trainer.pt").stat().st_mtime_ns for r in replicate.runs
    ]
    run_all(replicate)  # nothing left to do
    assert stamps == [
        (r.directory / "checkpoint" / "trainer.pt").stat().st_mtime_ns for r in replicate.runs
    ]
    cut = replicate.runs[2].directory / "metrics.jsonl"
    lines = cut.read_text().splitlines()
    cut.write_text(lines[0] + "\n")  # as if killed after the first evaluation's line
    assert replicate.runs[2].state() == "interrupted"
    partial = write_tables(replicate)  # the cut run's mid-run line is in no mean
    assert "3 done, 1 interrupted" in partial
    other = json.loads((replicate.runs[3].directory / "metrics.jsonl").read_text().splitlines()[-1])
    [beta_row] = [line for line in partial.splitlines() if line.startswith("| beta | 0.5 | 1 |")]
    assert beta_row.split(" | ")[3] == f"{other['nll']:.4g}"  # seed 1's alone, no ± yet
    run_all(replicate)
    final, again = json.loads(lines[-1]), json.loads(cut.read_text().splitlines()[-1])
    final.pop("train_samples_per_s"), again.pop("train_samples_per_s")
    assert again == final and replicate.runs[2].state() == "done"
    write_tables(replicate)
    runs = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    nll = runs[runs["group"] == "beta"]["nll"]
    text = (tmp_path / "tiny" / "tables.md").read_text()
    mean, se = statistics.mean(nll), statistics.stdev(nll) / math.sqrt(2)
    assert f"{mean:.4g} ± {se:.2g}" in text and "4 done" in text


def test_verdicts_follow_the_two_standard_error_rule() -> None:
    rows = pd.DataFrame(
        {
            "group": ["base"] * 3 + ["a"] * 3 + ["b"] * 3,
            "objective.params.beta": [1.0] * 9,
            "nll": [100.0, 100.2, 99.8, 98.0, 98.1, 97.9, 99.9, 100.1, 100.3],
            "nll_train": [90.0, 90.1, 89.9, 92.0, 92.1, 91.9, 90.0, 90.2, 90.1],
        }
    )
    groups = {
        "base": {"grid": {"objective.params.beta": [1.0]}},
        "a": {"grid": {"objective.params.beta": [1.0]}, "baseline": "base"},
        "b": {"grid": {"objective.params.beta": [1.0]}, "baseline": "base"},
    }
    table = figure2_verdicts(rows, groups).set_index("group")
    assert table.loc["a", "nll verdict"] == "lower by > 2 SE"
    assert table.loc["a", "nll_train verdict"] == "higher by > 2 SE"
    assert table.loc["b", "nll verdict"] == "within 2 SE"
    assert mean_se(pd.Series([1.0, 3.0])) == (2.0, 1.0)


@pytest.mark.parametrize(
    "name", ["replicate-figure1-cpu", "replicate-figure2-cpu", "replicate-figure2-fashion-cpu"]
)
def test_the_shipped_replicates_load_and_each_group_trains(name: str, tmp_path: Path) -> None:
    digits = write_idx_dir(tmp_path / "digits", train=200, test=60)
    replicate = load_replicate(CONFIGS / f"{name}.yaml", [], str(tmp_path))
    assert len({r.directory for r in replicate.runs}) == len(replicate.runs)
    image = replicate.runs[0].experiment.dataset.name != "mog"
    overrides = [*TINY, f"dataset.data_dir={digits}"] if image else TINY
    tiny = load_replicate(CONFIGS / f"{name}.yaml", overrides, str(tmp_path))
    firsts = {r.group: r for r in reversed(tiny.runs)}  # the first run of each group
    for run in firsts.values():
        run_all(tiny.__class__(tiny.name, tiny.table, tiny.groups, (run,), tiny.home))
        assert run.state() == "done"


def test_the_figure2_plot_draws_each_beta_from_its_baseline() -> None:
    """One line per (group, β) and panel, starting at the baseline's point at that β (λ = 0),
    each point the mean over seeds with its standard error; unfinished runs (NaN) left out."""
    beta, lam = "objective.params.beta", "objective.params.lambda"
    rows = pd.DataFrame(
        {
            "group": ["elbo"] * 4 + ["info"] * 5,
            beta: [1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0, 0.5, 0.5],
            lam: [math.nan] * 4 + [5.0, 5.0, 5.0, 5.0, 5.0],
            "nll": [90.0, 92.0, 95.0, 97.0, 91.0, 93.0, math.nan, 96.0, 96.0],
            "nll_train": [80.0] * 9,
        }
    )
    groups = {"elbo": {}, "info": {"baseline": "elbo", "grid": {lam: [5.0]}}}
    figure = figure2_plot(rows, groups)
    traces = {(t.name, t.xaxis): t for t in figure.data}
    assert len(traces) == 4  # β 0.5 and 1, test and train
    at_one = traces[("info, β = 1", "x")]
    assert list(at_one.x) == ["0", "5"] and list(at_one.y) == [91.0, 92.0]
    assert list(at_one.error_y.array) == pytest.approx([1.0, 1.0])  # std √2 / √2
    assert list(traces[("info, β = 0.5", "x")].y) == [96.0, 96.0]
    assert list(traces[("info, β = 1", "x2")].y) == [80.0, 80.0]


def test_the_figure1_plot_draws_each_runs_nll_and_mi_against_the_step() -> None:
    """A line per run and panel, its points the run's curve; a colour per group, a dash per
    seed; a run with no evaluation yet is left out."""

    def points(nll: list[float], mi: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"step": [100, 200], "nll": nll, "mi": mi})

    curves = [
        ("uncapped", 0, points([1.5, 1.4], [3.0, 4.0])),
        ("uncapped", 1, points([1.45, 1.38], [3.1, 4.2])),
        ("elbo", 0, points([1.37, 1.36], [1.2, 1.3])),
        ("elbo", 1, pd.DataFrame()),
    ]
    figure = figure1_plot(curves)
    traces = {(t.name, t.xaxis): t for t in figure.data}
    assert len(traces) == 6  # 3 runs with points, 2 panels
    assert list(traces[("uncapped, seed 1", "x")].y) == [1.45, 1.38]
    assert list(traces[("uncapped, seed 1", "x2")].y) == [3.1, 4.2]
    assert list(traces[("elbo, seed 0", "x")].x) == [100, 200]
    one, other = traces[("uncapped, seed 0", "x")], traces[("uncapped, seed 1", "x")]
    assert one.line.color == other.line.color != traces[("elbo, seed 0", "x")].line.color
    assert one.line.dash != other.line.dash
