"""`search.sampler: gp` asked for a batch: a population asks K points before any reports.

Optuna's GPSampler puts the trials still RUNNING into its batch acquisition (qLogEHVI), so K
points asked together must spread out; hidden from it (each told failed before the next ask,
as a sampler that ignores running trials would see them) the same sampler proposes one point
K times. Both sides run here, so the bound is shown to tell the two apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_study import family_study, tiny

from experiment.config import experiment_from_dict
from search.members import member_key
from search.space_config import parse_space

K = 6
SPREAD = 0.01  # min pairwise distance, in the unit box (λ in log): well apart, not one point
NAMES = ("nll", "mi")


def told(point: dict[str, float]) -> dict[str, float]:
    """A smooth made-up result with its best values inside the box, not on a corner."""
    alpha, lam = point["objective.params.alpha"], math.log10(point["objective.params.lambda"])
    nll = 1.4 + (alpha - 0.3) ** 2 + 0.02 * lam
    return {"nll": nll, "mi": 1.0 - (alpha + 0.2) ** 2 - 0.1 * lam}


def unit(points: list[dict[str, float]]) -> np.ndarray:
    """The points in the unit box of the space (λ on its log scale)."""
    space = parse_space(experiment_from_dict(tiny("gp")))
    rows = []
    for point in points:
        row = []
        for p in space.params:
            value, low, high = point[p.key], p.low, p.high
            if p.log:
                value, low, high = math.log(value), math.log(low), math.log(high)
            row.append((value - low) / (high - low))
        rows.append(row)
    return np.array(rows)


def min_distance(x: np.ndarray) -> float:
    gaps = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return float(gaps[np.triu_indices(len(x), 1)].min())


def batch(tmp_path: Path, seed: int, hide_running: bool) -> np.ndarray:
    """K points asked after 6 told results (the sampler models from 4 on: 12 samples)."""
    experiment = experiment_from_dict(tiny("gp", search={"num_samples": 12, "seed": seed}))
    study = family_study(experiment, tmp_path, sampler="gp")
    for i in range(6):
        study.tell(f"t{i}", "ok", told(study.ask(f"t{i}")), NAMES)
    points = []
    for k in range(K):
        points.append(study.ask("pop", k))
        if hide_running:  # failed, not refused: the GP itself proposes the next point
            study.tell(member_key("pop", k), "error", {}, NAMES)
    return unit(points)


@pytest.mark.parametrize("seed", [0, 1])
def test_points_asked_together_spread_out_where_a_blind_gp_repeats_one(
    seed: int, tmp_path: Path
) -> None:
    aware, blind = batch(tmp_path / "aware", seed, False), batch(tmp_path / "blind", seed, True)
    assert len({tuple(p) for p in aware}) == K
    assert min_distance(aware) > SPREAD
    assert min_distance(blind) < SPREAD  # the collapse the batch acquisition avoids
