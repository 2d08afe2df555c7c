"""The pure part of bench/search_quality.py (bench/quality_curves.py) against brute force:
the anytime hypervolume curve, the time to reach a value, the value at a time, and the
ratios read off two curves. No search runs here."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from quality_curves import (  # noqa: E402
    Curve,
    anytime_curve,
    band,
    cumulative,
    hv_ratio_at,
    reach_ratio,
    spread,
    time_to_reach,
    value_at,
)

MODES = ("min", "max")
REFERENCE = (2.0, 0.0)


def brute_hypervolume(points: np.ndarray) -> float:
    """The dominated area by counting cells of a fine grid (the points lie on it)."""
    step = 0.05
    xs = np.arange(0.0, REFERENCE[0], step) + step / 2  # nll cells below the reference
    ys = np.arange(0.0, 1.0, step) + step / 2  # mi cells above it, up to 1
    if len(points) == 0:
        return 0.0
    covered = sum(
        any(x >= p[0] and y <= p[1] for p in points) for x, y in itertools.product(xs, ys)
    )
    return covered * step * step


def random_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = rng.integers(0, 6, size=n).astype(float)  # ties: members told together
    values = np.column_stack([rng.integers(0, 40, n) * 0.05, rng.integers(1, 20, n) * 0.05])
    usable = rng.random(n) > 0.2
    return times, values, usable


@pytest.mark.parametrize("seed", range(4))
def test_the_anytime_curve_is_the_hypervolume_of_what_had_finished(seed: int) -> None:
    rng = np.random.default_rng(seed)
    times, values, usable = random_rows(rng, 12)
    curve = anytime_curve(times, values, usable, MODES, REFERENCE)
    assert np.all(np.diff(curve.x) >= 0) and np.all(np.diff(curve.hv) >= -1e-12)
    for at in np.arange(-1.0, 7.0, 0.5):
        finished = values[(times <= at) & usable]
        assert value_at(curve, at) == pytest.approx(brute_hypervolume(finished), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_time_to_reach_is_the_first_time_the_finished_trials_dominate_that_much(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    times, values, usable = random_rows(rng, 12)
    curve = anytime_curve(times, values, usable, MODES, REFERENCE)
    for target in (0.0, 0.1, 0.5, curve.final, curve.final + 0.01):
        moments = sorted(set(times))
        first = next(
            (t for t in moments if brute_hypervolume(values[(times <= t) & usable]) >= target),
            math.inf,
        )
        assert time_to_reach(curve, target) == (0.0 if target == 0 else first)


def test_unusable_trials_mark_time_and_add_nothing() -> None:
    values = np.array([[1.0, 0.5], [0.5, 0.9], [0.5, 0.2]])
    curve = anytime_curve([1.0, 2.0, 3.0], values, [True, False, True], MODES, REFERENCE)
    assert list(curve.x) == [1.0, 2.0, 3.0]
    assert curve.hv[1] == curve.hv[0] == pytest.approx(1.0 * 0.5)
    assert curve.final == pytest.approx(0.5 + 0.5 * 0.2)  # the third adds the strip below 1.0


def test_steps_add_up_in_finishing_order_whatever_the_row_order() -> None:
    totals = cumulative([3.0, 1.0, 2.0, 1.0], [100, 10, 50, 20])
    assert list(totals) == [180, 10, 80, 30]  # 10, then its tie 20, then 50, then 100


def test_ratios_pair_a_method_with_a_reference() -> None:
    reference = Curve(np.array([2.0, 4.0, 8.0]), np.array([0.1, 0.3, 0.4]))
    faster = Curve(np.array([1.0, 2.0]), np.array([0.2, 0.5]))
    never = Curve(np.array([1.0]), np.array([0.35]))
    assert reach_ratio(faster, reference) == pytest.approx(2.0 / 8.0)  # 0.4 reached at 2 of 8
    assert reach_ratio(reference, reference) == 1.0
    assert reach_ratio(never, reference) == math.inf
    assert hv_ratio_at(faster, reference, 0.5, 8.0) == pytest.approx(0.5 / 0.4)
    assert hv_ratio_at(reference, reference, 0.5, 8.0) == pytest.approx(0.3 / 0.4)
    assert hv_ratio_at(never, reference, 0.1, 8.0) == 0.0  # nothing finished by 0.8 s


def test_spread_says_when_a_seed_never_got_there() -> None:
    assert spread([0.2, 0.4]).text() == "0.30 [0.20-0.40]"
    assert spread([0.2, math.inf]).text() == "never (1/2 seeds)"
    mean, low, high = band(
        [Curve(np.array([1.0]), np.array([1.0])), Curve(np.array([2.0]), np.array([3.0]))],
        np.array([0.0, 1.5, 3.0]),
    )
    assert list(mean) == [0.0, 0.5, 2.0] and list(low) == [0, 0, 1] and list(high) == [0, 1, 3]


def test_a_fixed_reference_is_not_stretched_by_a_blown_up_trial() -> None:
    import pandas as pd
    from quality_runs import Run, score

    def run(seed: int, values: list[tuple[float, float]]) -> Run:
        rows = pd.DataFrame(values, columns=["nll", "mi"])
        rows["status"], rows["t"], rows["step"] = "ok", np.arange(len(rows), dtype=float), 10
        return Run("m", seed, float(len(rows)), rows, ["nll", "mi"], list(MODES))

    sane = [(1.0, 0.5), (1.5, 0.9)]
    runs = {"m": [run(0, sane), run(1, [*sane, (30.0, 0.95)])]}  # nll 30: a blown-up member
    derived = score(runs)
    assert derived[0] > 30  # the worst usable trial's nll, and a margin
    fixed = score(runs, REFERENCE)
    assert list(fixed) == list(REFERENCE)
    expected = brute_hypervolume(np.array(sane))
    for r in runs["m"]:  # the blown-up trial lies outside the box and adds nothing
        assert r.curves["seconds"].final == pytest.approx(expected, abs=1e-9)
        assert list(r.curves["steps"].x) == [10.0 * (i + 1) for i in range(len(r.rows))]


def test_a_kept_run_moved_with_its_folder_reads_its_files_from_there(tmp_path: Path) -> None:
    """run.json names its files by their absolute paths at the end of the run: once the
    benchmark's folder moves, the files of the same names under the run's folder are read;
    recorded paths that still exist are kept."""
    from quality_runs import relocated

    old = tmp_path / "old" / "grid" / "0" / "lagrangian-mog"
    here = tmp_path / "new" / "grid" / "0"
    (here / "lagrangian-mog").mkdir(parents=True)
    for name in ("trials.csv", "optuna.journal"):
        (here / "lagrangian-mog" / name).write_text("")
    result = {"csv": str(old / "trials.csv"), "study": str(old / "optuna.journal"), "start": 1.0}
    moved = relocated(result, here)
    assert moved["csv"] == str(here / "lagrangian-mog" / "trials.csv")
    assert moved["study"] == str(here / "lagrangian-mog" / "optuna.journal")
    assert moved["start"] == 1.0 and result["csv"] == str(old / "trials.csv")  # a copy
    old.mkdir(parents=True)
    (old / "trials.csv").write_text("")
    kept = relocated(result, here)  # the recorded csv exists: it stays; the journal moves
    assert kept["csv"] == str(old / "trials.csv")
    assert kept["study"] == str(here / "lagrangian-mog" / "optuna.journal")
