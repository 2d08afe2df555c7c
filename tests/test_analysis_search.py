"""The dashboard and the export of a real small search, end to end.

One search (5 trials of tiny ReLU nets on mog, one of them diverging) on a local Ray: the
dashboard is rewritten after each trial, rendered in headless Chromium (the points plotly
draws in the Pareto plot are counted in the rendered page), and the knee is exported and
re-trained from its file with `run_search.py train`, repeating the recorded metrics. The
tests that need Chromium take the `browser` fixture (tests/conftest.py): skipped without one,
failed without one under CI=true.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

import analysis.report
import run_search
from analysis.figures import PARETO_DIV
from analysis.png import headless

pytestmark = pytest.mark.slow

FIGURES = ("pareto", "rate-distortion", "parallel", "hypervolume", "curves", "beta")
TOLERANCE = 1e-6  # re-trained metrics against the recorded ones (measured: identical on CPU)
EXPERIMENT: dict[str, Any] = {
    "name": "small",
    "seed": 0,
    "dataset": {"name": "mog", "train_size": 2000, "test_size": 200},
    "model": {"hidden": 16, "activation": "relu"},
    "objective": {"preset": "beta-vae", "beta": 1.0},
    "train": {"steps": 200, "eval_every": 100, "eval_size": 100},
    "space": {
        "family": "beta-elbo",
        "params": {"train.lr": {"low": 1e-3, "high": 1e6, "log": True}},
    },
    "search": {  # every point enqueued: 4 that train and one that overflows to NaN
        "num_samples": 5,
        "sampler": "random",
        "enqueue_presets": [
            {"beta": b, "train.lr": lr}
            for b, lr in ((0.2, 1e-2), (0.6, 5e-3), (1.0, 1e-2), (2.5, 3e-3), (1.0, 1e5))
        ],
    },
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[int]]]:
    """Run the search from the command line; the experiment directory, and the trials the
    dashboard showed each time the search rewrote it."""
    root = tmp_path_factory.mktemp("search")
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(EXPERIMENT))
    shown: list[int] = []
    real = analysis.report.write_report

    def spy(*args: Any, **kwargs: Any) -> Any:
        written = real(*args, **kwargs)
        counts = re.search(r"<p>Trials: ([^.]*)\.", written.path.read_text()).group(1)
        shown.append(sum(int(n) for n in re.findall(r"(\d+) \w+", counts)))
        return written

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    patch = pytest.MonkeyPatch()
    patch.setattr(analysis.report, "write_report", spy)
    try:
        code = run_search.main(["search", str(path), "--storage", str(root / "results")])
    finally:
        patch.undo()
        ray.shutdown()
    assert code == 0
    yield root / "results" / "small", shown


def finished_rows(home: Path) -> list[dict[str, str]]:
    with (home / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


class PointCounter(HTMLParser):
    """Counts the SVG markers (`path.point`) plotly drew inside the element with an id."""

    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.depth, self.points = element_id, 0, 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if self.depth:
            self.depth += tag not in ("path", "rect", "line", "circle", "br", "img", "input")
            self.points += tag == "path" and "point" in (attributes.get("class") or "").split()
        elif attributes.get("id") == self.element_id:
            self.depth = 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag not in ("path", "rect", "line", "circle", "br", "img", "input"):
            self.depth -= 1


def test_the_dashboard_is_rewritten_as_each_trial_finishes(
    searched: tuple[Path, list[int]],
) -> None:
    home, shown = searched
    assert shown == [1, 2, 3, 4, 5, 5]  # after each of the 5 trials, and once at the end
    statuses = sorted(row["status"] for row in finished_rows(home))
    assert statuses == ["diverged", "ok", "ok", "ok", "ok"]


def test_the_last_dashboard_write_of_a_search_adds_a_png_of_each_figure(
    browser: str, searched: tuple[Path, list[int]]
) -> None:
    home, _ = searched
    for name in FIGURES:
        assert (home / f"small.{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_chromium_draws_one_pareto_point_per_finished_trial(
    browser: str, searched: tuple[Path, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    home, _ = searched
    assert run_search.main(["report", str(home)]) == 0
    out = capsys.readouterr().out
    for name in FIGURES:  # a PNG of each figure, through the same browser
        png = home / f"small.{name}.png"
        assert f"figure: {png}" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    command = headless(browser, home / "report.html", "--dump-dom")
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    counter = PointCounter(PARETO_DIV)
    counter.feed(dom)
    ok = sum(row["status"] == "ok" for row in finished_rows(home))
    assert ok == 4 and counter.points == ok  # the diverged trial is counted, never drawn
    assert "left out: 1 diverged" in dom


def test_the_exported_knee_re_trains_to_its_recorded_metrics(
    searched: tuple[Path, list[int]], tmp_path: Path
) -> None:
    home, _ = searched
    exported = tmp_path / "knee.yaml"
    assert run_search.main(["export", str(home), "--pick", "knee", "--out", str(exported)]) == 0
    trial_id = re.search(r"trial (\w+) \(status ok\)", exported.read_text()).group(1)
    [recorded] = [row for row in finished_rows(home) if row["trial_id"] == trial_id]
    assert run_search.main(["train", str(exported), "--out", str(tmp_path / "train")]) == 0
    lines = (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()
    final = json.loads(lines[-1])
    assert final["step"] == 200
    for metric in ("nll", "elbo", "rate", "distortion", "mi", "kl_qz_pz", "mmd_qz_pz"):
        assert abs(final[metric] - float(recorded[metric])) <= TOLERANCE, metric
