"""Analysis on a hand-written experiment directory (no Ray): the tidy frames, exports, the
dashboard and the command lines. A real search, rendered in Chromium, is
tests/test_analysis_search.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

import analysis
from analysis.export import export
from analysis.report import write_comparison, write_report
from analysis.results import ResultsError
from experiment.config import experiment_from_dict, load_experiment
from run_search import main as cli
from search import storage

# trial, status, beta, lambda, nll, mi, mi_upper, rate, distortion, ended_at
ROWS = [
    ("t1", "ok", 0.5, 10.0, 1.40, 0.9, 1.0, 1.2, 0.6, 5),
    ("t2", "ok", 1.0, 100.0, 1.38, 0.6, 0.7, 0.8, 0.7, 2),
    ("t3", "ok", 2.0, 1000.0, 1.35, 0.1, 0.2, 0.3, 1.1, 3),
    ("t4", "ok", 1.5, 50.0, 1.50, 0.5, 0.6, 0.7, 0.9, 4),  # dominated by t2
    ("t5", "diverged", 0.2, 5.0, math.nan, math.nan, math.nan, math.nan, math.nan, 1),
]


def write_experiment_dir(directory: Path, name: str = "toy") -> Path:
    experiment = experiment_from_dict(
        {
            "name": name,
            "objective": {"preset": "infovae", "beta": 1.0, "lambda": 10.0},
            "train": {"steps": 10, "eval_every": 5},
            "space": {"family": "infovae"},
        }
    )
    directory.mkdir(parents=True)
    (directory / "experiment.yaml").write_text(yaml.safe_dump(experiment.to_dict()))
    columns = ["trial_id", "status", "objective.params.beta", "objective.params.lambda"]
    columns += ["nll", "mi", "mi_upper", "rate", "distortion", "ended_at"]
    frame = pd.DataFrame(ROWS, columns=columns)
    frame["elbo"] = -(frame["rate"] + frame["distortion"])
    frame["mi_cap"], frame["mi_bound"] = math.log(2000), "mi"
    frame.to_csv(directory / "trials.csv", index=False)
    for trial_id, *_, nll, mi, _, rate, distortion, _ in ROWS[:3]:
        lines = [{"step": s, "status": "running", "nll": nll + 1 / s, "mi": mi} for s in (5, 10)]
        lines[-1] |= {"status": "ok", "nll": nll, "rate": rate, "distortion": distortion}
        write_result(directory / f"trial_{trial_id}", lines, partial='{"step": 15, "nl')
    config = {"objective.params.beta": 0.7, "objective.params.lambda": 20.0}
    write_result(directory / "trial_t6", [{"step": 5, "nll": 1.6, "mi": 0.3, "config": config}])
    return directory


def write_result(folder: Path, lines: list[dict], partial: str = "") -> None:
    """Tune's result.json: one JSON object a line; `partial`: a line still being written."""
    folder.mkdir()
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / "result.json").write_text(text + partial)


@pytest.fixture
def experiment_dir(tmp_path: Path) -> Path:
    return write_experiment_dir(tmp_path / "toy")


# --------------------------------------------------------------------------- frames


def test_load_is_one_tidy_row_per_trial_with_the_lagrangian(experiment_dir: Path) -> None:
    trials = analysis.load(experiment_dir)
    assert trials["trial_id"].tolist() == ["t1", "t2", "t3", "t4", "t5", "t6"]
    assert trials["status"].tolist() == ["ok"] * 4 + ["diverged", "unfinished"]
    assert set(trials["experiment"]) == {"toy"} and set(trials["family"]) == {"infovae"}
    # infovae (Section 4.2): (β-1) I_q + KL(q(x|z)||p(x|z)) + β KL(q(z)||p(z)) + λ MMD
    t3 = trials.set_index("trial_id").loc["t3"]
    assert t3["alpha1"] == 0 and t3["alpha2"] == pytest.approx(1.0)
    assert t3["lambda:KL(q(z)||p(z))"] == pytest.approx(2.0)
    assert t3["lambda:MMD(q(z)||p(z))"] == pytest.approx(1000.0)
    assert t3["bound:mi"] == "lower" and t3["bound:mi_upper"] == "upper"
    assert t3["bound:rate"] == "upper" and t3["mi_bound"] == "mi"
    t6 = trials.set_index("trial_id").loc["t6"]  # still training: its latest evaluation
    assert t6["nll"] == 1.6 and t6["lambda:MMD(q(z)||p(z))"] == pytest.approx(20.0)


def test_load_several_experiments_names_each(tmp_path: Path) -> None:
    first = write_experiment_dir(tmp_path / "a", "toy")
    second = write_experiment_dir(tmp_path / "b", "toy")
    trials = analysis.load(first, second)
    assert trials["experiment"].value_counts().to_dict() == {"toy": 6, "toy#2": 6}


def test_load_reads_a_storage_uri(
    experiment_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "CACHE", tmp_path / "cache")  # where URI files are fetched
    local = analysis.load(experiment_dir)
    remote = analysis.load(experiment_dir.resolve().as_uri())  # file://, through pyarrow
    pd.testing.assert_frame_equal(local, remote)
    curves = analysis.load_curves(experiment_dir.resolve().as_uri())
    assert len(curves) == 7
    assert len(list((tmp_path / "cache" / "analysis").glob("toy-*/trial_*/result.json"))) == 4


def test_curves_are_one_row_per_evaluation_and_skip_a_half_written_line(
    experiment_dir: Path,
) -> None:
    curves = analysis.load_curves(experiment_dir)
    assert curves.groupby("trial_id")["step"].apply(list).to_dict() == {
        "t1": [5, 10],
        "t2": [5, 10],
        "t3": [5, 10],
        "t6": [5],
    }
    last = curves[(curves["trial_id"] == "t3") & (curves["step"] == 10)].iloc[0]
    assert last["nll"] == 1.35 and last["status"] == "ok"


def test_missing_or_empty_directories_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no experiment.yaml"):
        analysis.load(tmp_path)
    write_experiment_dir(tmp_path / "empty")
    (tmp_path / "empty" / "trials.csv").unlink()
    for folder in (tmp_path / "empty").glob("trial_*"):
        (folder / "result.json").unlink()
    with pytest.raises(ResultsError, match="no trials recorded yet"):
        analysis.load(tmp_path / "empty")


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize(
    ("picks", "conditions", "expected"),
    [
        (["min-nll"], [], "t3"),
        (["max-mi"], [], "t1"),
        (["knee"], [], "t2"),
        (["trial=t4"], [], "t4"),
        (["min-nll"], ["nll>=1.36"], "t2"),  # filter, then pick
        (["max-mi"], ["mi<0.9", "rate<=0.8"], "t2"),
    ],
)
def test_export_picks_one_trial(
    experiment_dir: Path, tmp_path: Path, picks: list[str], conditions: list[str], expected: str
) -> None:
    [path] = export(experiment_dir, picks, conditions, out=tmp_path / "one.yaml")
    assert path == tmp_path / "one.yaml"
    text = path.read_text()
    assert text.startswith(f"# Exported from {experiment_dir}, trial {expected} ")
    experiment = load_experiment(path)  # the file trains as it is: it loads as an experiment
    assert experiment.name == f"toy-{expected}" and experiment.space == {}
    assert experiment.train.threads == 1  # the trial's threads: CPU numbers repeat
    row = analysis.load(experiment_dir).set_index("trial_id").loc[expected]
    assert experiment.objective.params == {
        "beta": row["objective.params.beta"],
        "lambda": row["objective.params.lambda"],
    }
    if expected != "t5":
        assert f"nll {row['nll']:.8g}" in text  # the recorded metrics as provenance


def test_export_all_pareto_and_json(experiment_dir: Path, tmp_path: Path) -> None:
    paths = export(experiment_dir, all_pareto=True)
    assert sorted(p.name for p in paths) == ["toy-t1.yaml", "toy-t2.yaml", "toy-t3.yaml"]
    assert all(p.parent == experiment_dir / "exports" for p in paths)
    [path] = export(experiment_dir, ["knee"], fmt="json", out=tmp_path / "json")
    assert json.loads(path.read_text())["name"] == "toy-t2"
    assert load_experiment(path).objective.params["lambda"] == 100.0
    about = json.loads(path.with_name(path.name + ".provenance.json").read_text())
    assert about["trial_id"] == "t2" and about["recorded"]["nll"] == 1.38
    assert "knee" in about["picked"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--pick", "best"], "--pick 'best': choose one of min-nll, max-mi, knee or trial=ID"),
        (["--pick", "trial=nope"], "no trial 'nope'"),
        (["--where", "nll<<1"], "expected COLUMN OP NUMBER"),
        (["--where", "loss<1"], "no column 'loss'"),
        (["--where", "nll<one"], "'one' is not a number"),
        (["--where", "nll<1"], "no finished trial meets the conditions"),
        (["--format", "toml"], "--format 'toml': choose one of yaml, json"),
        (["--all-pareto", "--out", "x.yaml"], "3 files to write; give a folder"),
    ],
)
def test_export_errors_are_one_line_and_exit_2(
    experiment_dir: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    assert cli(["export", str(experiment_dir), *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


# --------------------------------------------------------------------------- dashboards


def test_report_is_one_self_contained_file_with_every_figure(experiment_dir: Path) -> None:
    written = write_report(experiment_dir)
    text = written.path.read_text()
    assert written.path == experiment_dir / "report.html"
    assert text.count("window.PlotlyConfig") == 1 and "<script src=" not in text  # no network
    for name in ("pareto", "rate-distortion", "parallel", "hypervolume", "curves", "beta"):
        assert f'id="{name}"' in text
    assert "a lower bound on I_q(x;z), estimated by aggregate posterior" in text  # the caption
    assert "best lower bound (mi) and the tightest upper bound (mi_upper, rate)" in text
    assert "In the fronts: 4; left out: 1 diverged, 1 unfinished" in text
    best = text.split("Best trials")[1]
    for trial_id in ("t1", "t2", "t3"):
        command = f"python run_search.py export {experiment_dir} --pick trial={trial_id}"
        assert command in best
    assert "trial=t4" not in best  # dominated, and neither min-nll, max-mi nor the knee


def test_a_search_without_a_finished_trial_still_gets_a_dashboard(experiment_dir: Path) -> None:
    """The first rewrite of a search whose trials all diverged so far: counts, no fronts."""
    trials = pd.read_csv(experiment_dir / "trials.csv")
    trials.assign(status="diverged").to_csv(experiment_dir / "trials.csv", index=False)
    text = write_report(experiment_dir).path.read_text()
    assert "In the fronts: 0; left out: 5 diverged, 1 unfinished" in text
    assert "No finished trial yet" in text and 'id="hypervolume"' not in text


def test_cli_report_compare_and_their_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_experiment_dir(tmp_path / "a", "beta-elbo")
    second = write_experiment_dir(tmp_path / "b", "infovae")
    out = tmp_path / "compare.html"
    assert cli(["compare", str(first), str(second), "--out", str(out)]) == 0
    text = out.read_text()
    assert "beta-elbo vs infovae" in text and text.count("window.PlotlyConfig") == 1
    assert "<td>beta-elbo</td><td>6</td><td>4</td><td>3</td>" in text  # trials, fronts, Pareto
    capsys.readouterr()
    assert cli(["report", str(first), "--no-png"]) == 0
    assert capsys.readouterr().out.startswith(f"dashboard: {first / 'report.html'}")
    assert cli(["report", str(tmp_path / "missing")]) == 2
    assert cli(["compare", str(first), str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_comparison_overlays_each_experiment(tmp_path: Path) -> None:
    first = write_experiment_dir(tmp_path / "a", "grid")
    second = write_experiment_dir(tmp_path / "b", "tpe")
    written = write_comparison([first, second], tmp_path / "c.html")
    text = written.path.read_text()
    assert '"name":"grid: Pareto front"' in text and '"name":"tpe: Pareto front"' in text
