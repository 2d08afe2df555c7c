"""Population trials (training/population.py): K members trained as one batched model
give the plain trainer's metrics, member by member.

Tolerances: a population of one is bit-identical to the plain trainer on CPU (the batched
matmul of one member and the unbatched one agree exactly here, and every draw comes from the
member's own generators in the plain order). Members of a larger population go through
`baddbmm` over K matrices, which may sum in another order: after 50 steps their metrics stay
within METRIC_TOLERANCE, relative (2.4e-7 seen on mog, 1.2e-7 on images).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_idx_dir

from experiment.config import ConfigError, Experiment, experiment_from_dict
from objectives.stacked import StackedLinear, draw_order
from training.population import Population
from training.trainer import Trainer

STEPS = 50
METRIC_TOLERANCE = 1e-5  # relative to max(1, |metric|): image NLLs are hundreds of nats
IGNORED = {"train_samples_per_s"}  # timing, not a result


def member(
    seed: int = 0, data_dir: Path | None = None, eval_every: int = STEPS, **objective: Any
) -> Experiment:
    """One member: the quick demo's network (2x64, z 1) on mog, 50 steps, evaluated every
    `eval_every`; on IDX images (`data_dir`) a Bernoulli decoder with z 4. Objective: InfoVAE
    by default. Evaluation on 64 test and 64 training points keeps the quadrature cheap."""
    data: dict[str, Any] = {
        "name": "population",
        "seed": seed,
        "dataset": {"name": "mog", "train_size": 512, "test_size": 64},
        "model": {"hidden": 64, "layers": 2, "z_dim": 1},
        "objective": objective or {"preset": "infovae", "beta": 0.5, "lambda": 10.0},
        "train": {
            "steps": STEPS,
            "eval_every": eval_every,
            "batch_size": 32,
            "iw_samples": 8,
            "nll_train_size": 64,
            "threads": 1,  # a second thread only waits on a shared machine
        },
    }
    if data_dir is not None:
        data["dataset"] = {"name": "mnist", "data_dir": str(data_dir), "test_size": 32}
        data["model"]["z_dim"] = 4
    return experiment_from_dict(data)


def plain_run(experiment: Experiment) -> list[dict[str, Any]]:
    return list(Trainer(experiment).run())


def population_runs(experiments: list[Experiment], **poison: int) -> list[list[dict[str, Any]]]:
    """Each member's metrics at each evaluation; `poison=k` sets member k's first weight to NaN."""
    population = Population(experiments)
    if "poison" in poison:
        with torch.no_grad():
            population.model.encoder.net[0].weight_t[poison["poison"]].fill_(math.nan)
    rounds = list(population.run())
    return [[metrics[k] for metrics in rounds] for k in range(len(experiments))]


def differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """|a - b| / max(1, |a|) per numeric metric (0 where both are NaN); other values equal."""
    assert a.keys() == b.keys()
    out = {}
    for key in a.keys() - IGNORED:
        if isinstance(a[key], float) and isinstance(b[key], float):
            both_nan = math.isnan(a[key]) and math.isnan(b[key])
            out[key] = 0.0 if both_nan else abs(a[key] - b[key]) / max(1.0, abs(a[key]))
        else:
            assert a[key] == b[key], key
    return out


def test_a_population_of_one_is_exactly_the_plain_trainer() -> None:
    experiment = member(seed=3, eval_every=25)  # an evaluation mid-run and at the end
    plain, (population,) = plain_run(experiment), population_runs([experiment])
    assert len(plain) == len(population) == 2
    for a, b in zip(plain, population, strict=True):
        assert max(differences(a, b).values()) == 0.0, differences(a, b)
        assert a["status"] == b["status"] and a["step"] == b["step"]
    assert plain[-1]["status"] == "ok" and plain[-1]["done"]


@pytest.mark.parametrize("data", ["mog", "idx"])
def test_each_member_matches_its_separate_run(data: str, tmp_path: Path) -> None:
    data_dir = write_idx_dir(tmp_path, train=64, test=32) if data == "idx" else None
    objectives = [
        {"preset": "infovae", "beta": 0.3, "lambda": 1.0},
        {"preset": "infovae", "beta": 1.0, "lambda": 100.0},
        {"preset": "infovae", "beta": 1.7, "lambda": 1000.0},
        {"preset": "infovae", "beta": 0.8, "lambda": 5.0},
    ]
    if data == "idx":  # the Bernoulli decoder: two members suffice, and keep the test short
        objectives = objectives[:2]
    experiments = [member(10 + k, data_dir, **o) for k, o in enumerate(objectives)]
    runs = population_runs(experiments)
    finals = [run[-1]["nll"] for run in runs]
    assert len(set(finals)) == len(runs), "the members should differ (multipliers and seeds)"
    for experiment, run in zip(experiments, runs, strict=True):
        for a, b in zip(plain_run(experiment), run, strict=True):
            worst = differences(a, b)
            assert max(worst.values()) <= METRIC_TOLERANCE, worst


def test_a_diverged_member_leaves_the_others_unchanged() -> None:
    experiments = [member(seed) for seed in (1, 2, 3)]
    clean = population_runs(experiments)
    poisoned = population_runs(experiments, poison=1)
    for k in (0, 2):
        for a, b in zip(poisoned[k], clean[k], strict=True):
            assert max(differences(a, b).values()) == 0.0, differences(a, b)
        assert poisoned[k][-1]["status"] == "ok"
    final = poisoned[1][-1]
    assert final["status"] == "diverged" and final["diverged_step"] == 1
    assert final["diverged_term"] == "E_q[log p(x|z)]"  # the first term the NaN weight reaches
    assert math.isnan(final["nll"]) and final["done"]


def test_what_the_population_cannot_train_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"objective\.mi_upper_bound"):
        Population([member(preset="beta-vae", beta=0.5, mi_upper_bound=1.0)])
    with pytest.raises(ConfigError, match="divergences' settings"):
        Population([member(), member(preset="infovae", kernel="rbf")])
    with pytest.raises(ConfigError, match="differ in model"):
        other = experiment_from_dict(member().to_dict() | {"model": {"hidden": 32, "z_dim": 1}})
        Population([member(), other])


def test_draws_follow_the_plain_records_first_use() -> None:
    assert draw_order(["E_q[log p(x|z)]", "MMD(q(z)||p(z))"]) == ["z_q", "z_p"]
    assert draw_order(["E_p[log p(x|z)]", "MMD(q(z)||p(z))"]) == ["z_p", "z_q"]
    assert draw_order(["E_q[log q(z|x)]", "E_p[log p(z)]"]) == []
    # a divergence on (x, z) asks whether x ~ p(x|z) needs the score function first: z_p first
    assert draw_order(["JS(q(x,z)||p(x,z))"]) == ["z_p", "z_q", "x_p"]
    assert draw_order(["JS(q(x,z)||p(x,z))"], "straight-through") == ["z_q", "z_p", "x_p"]
    assert draw_order(["E_p[log q(z|x)]", "KL(q(z)||p(z))"]) == ["z_p", "x_p", "z_q"]


def test_a_stacked_linear_is_its_members_linears() -> None:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, 3) for _ in range(4)]
    x = torch.randn(4, 7, 5)  # (K, B, in)
    stacked = StackedLinear(layers)(x)  # (K, B, out)
    for k, layer in enumerate(layers):
        torch.testing.assert_close(stacked[k], layer(x[k]), rtol=1e-6, atol=1e-6)
