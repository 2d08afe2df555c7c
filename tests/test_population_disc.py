"""Discriminators in populations (objectives/stacked_disc.py): every adversarial divergence
(KL by density ratio, JS by the GAN game; on z, x and (x, z)), E_p[log q(z|x)] and x ~ p(x|z)
(Gaussian, Bernoulli by the score function or straight-through) train in a population as in
the plain trainer.

Tolerances: on mog a population of one is bit-identical to the plain trainer on CPU, as in
tests/test_population.py. On images it is within METRIC_TOLERANCE (1e-5 relative; 1.1e-7 seen,
often 0): the discriminator's 784 -> 256 layer is one matmul whose result depends on the
weight's layout in this BLAS (the stacked (K, in, out) against nn.Linear's transposed
(out, in) view differ in the last bit for that shape, not for the others here). Members of
larger populations stay within METRIC_TOLERANCE of their separate runs after 50 steps (at
most 4.4e-7 seen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_idx_dir
from test_population import METRIC_TOLERANCE, differences, member, plain_run, population_runs

from experiment.config import Experiment, experiment_from_dict
from objectives.stacked import StackedRecord
from training.population import Population
from training.trainer import Trainer

ALONE = {  # name: (data, objective): what each exercises
    "aae-non-saturating-2-disc-steps": ("mog", {"preset": "aae", "js_gradient": "non-saturating"}),
    "kl-infovae": ("mog", {"preset": "kl-infovae"}),  # KL(q(z)||p(z)) and KL(p(z)||q(z))
    "bigan": ("mog", {"preset": "bigan"}),  # JS on (x, z), Gaussian x ~ p(x|z), z_p drawn first
    "infogan": ("idx", {"preset": "infogan"}),  # Bernoulli x by the score function, E_p[log q]
    "cyclegan-straight-through": (
        "idx",
        {"preset": "cyclegan", "x_gradient": "straight-through"},
    ),
}


def experiment(
    seed: int, data: str, tmp_path: Path, disc_steps: int = 1, **objective: Any
) -> Experiment:
    data_dir = write_idx_dir(tmp_path, train=64, test=32) if data == "idx" else None
    out = member(seed, data_dir, **objective).to_dict()
    out["train"]["disc_steps"] = disc_steps
    return experiment_from_dict(out)


@pytest.mark.parametrize("name", list(ALONE))
def test_a_population_of_one_with_discriminators_is_the_plain_trainer(
    name: str, tmp_path: Path
) -> None:
    data, objective = ALONE[name]
    disc_steps = 2 if "2-disc-steps" in name else 1
    e = experiment(7, data, tmp_path, disc_steps, **objective)
    assert Trainer(e).loss.parameter_groups().keys() > {"p", "q"}, "has a discriminator"
    (population,) = population_runs([e])
    tolerance = 0.0 if data == "mog" else METRIC_TOLERANCE
    for a, b in zip(plain_run(e), population, strict=True):
        assert max(differences(a, b).values()) <= tolerance, differences(a, b)
    assert population[-1]["status"] == "ok"


@pytest.mark.parametrize("data", ["mog", "idx"])
def test_members_with_discriminators_match_their_separate_runs(data: str, tmp_path: Path) -> None:
    if data == "mog":  # KL both ways on z, four members with their own multipliers
        pairs = ((0.5, 2.0), (2.0, 3.0), (10.0, 0.2), (3.0, 0.5))
        objectives = [{"preset": "kl-infovae", "lambda1": a, "lambda2": b} for a, b in pairs]
    else:  # JS on x through the score function, and E_p[log q(z|x)]
        objectives = [{"preset": "infogan"}] * 2
    experiments = [experiment(30 + k, data, tmp_path, **o) for k, o in enumerate(objectives)]
    runs = population_runs(experiments)
    for e, run in zip(experiments, runs, strict=True):
        for a, b in zip(plain_run(e), run, strict=True):
            worst = differences(a, b)
            assert max(worst.values()) <= METRIC_TOLERANCE, worst


def test_each_member_keeps_its_own_discriminator(tmp_path: Path) -> None:
    experiments = [experiment(seed, "mog", tmp_path, preset="aae") for seed in (1, 2)]
    population = Population(experiments)
    name = "JS(q(z)||p(z))"
    stacked = population.divergences[name].discriminator.net[0].weight_t  # (K, in, out)
    for k, m in enumerate(population.members):  # initialised under each member's seed
        plain = m.loss.divergences[name].discriminator.net[0].weight
        torch.testing.assert_close(stacked[k], plain.t(), rtol=0, atol=0)
    assert population.optimizers["discriminators"].param_groups[0]["lr"] == 1e-3


def test_an_x_sample_is_the_plain_draw(tmp_path: Path) -> None:
    """x ~ p(x|z) from the same uniform noise: hard (score function) in {0, 1} without a
    gradient, straight-through hard in value with the relaxed gradient."""
    e = experiment(3, "idx", tmp_path, preset="infogan")
    population = Population([e])
    x = torch.stack([next(population.members[0].batches)])
    noise = {"z_p": torch.randn(1, 32, 4), "x_p": torch.rand(1, 32, x.shape[-1])}
    hard = StackedRecord(population.model, x, noise, "score-function").x_p
    relaxed = StackedRecord(population.model, x, noise, "straight-through").x_p
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and not hard.requires_grad
    assert set(relaxed.detach().unique().tolist()) <= {0.0, 1.0} and relaxed.requires_grad
