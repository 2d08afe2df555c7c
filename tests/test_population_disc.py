"""Discriminators in populations: every adversarial divergence (KL by density ratio, JS by the
GAN game; on z, x and (x, z)), E_p[log q(z|x)] and x ~ p(x|z) (Gaussian, Bernoulli by the score
function or straight-through) train in a population as in a run of their own.

Tolerances as in tests/test_population.py: a member alone (K = 1) and among others (K > 1) run
`baddbmm` over different numbers of matrices; after 50 steps their metrics stay within
METRIC_TOLERANCE (1e-5 relative to max(1, |metric|)).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_idx_dir
from test_population import assert_matches, member

from experiment.config import Experiment, experiment_from_dict
from objectives.record import ForwardRecord
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
def test_each_kind_of_discriminator_trains_beside_another_member_as_alone(
    name: str, tmp_path: Path
) -> None:
    data, objective = ALONE[name]
    disc_steps = 2 if "2-disc-steps" in name else 1
    pair = [experiment(seed, data, tmp_path, disc_steps, **objective) for seed in (7, 8)]
    assert Trainer(pair[0]).loss.parameter_groups().keys() > {"p", "q"}, "has a discriminator"
    assert_matches(pair)


@pytest.mark.parametrize("data", ["mog", "idx"])
def test_members_with_discriminators_match_their_separate_runs(data: str, tmp_path: Path) -> None:
    if data == "mog":  # KL both ways on z, four members with their own multipliers
        pairs = ((0.5, 2.0), (2.0, 3.0), (10.0, 0.2), (3.0, 0.5))
        objectives = [{"preset": "kl-infovae", "lambda1": a, "lambda2": b} for a, b in pairs]
    else:  # JS on x through the score function, and E_p[log q(z|x)]
        objectives = [{"preset": "infogan"}] * 2
    assert_matches([experiment(30 + k, data, tmp_path, **o) for k, o in enumerate(objectives)])


def test_each_member_keeps_its_own_discriminator(tmp_path: Path) -> None:
    experiments = [experiment(seed, "mog", tmp_path, preset="aae") for seed in (1, 2)]
    trainer = Trainer(experiments)
    name = "JS(q(z)||p(z))"
    stacked = trainer.loss.divergences[name].discriminator.net[0].weight_t  # (K, in, out)
    for k, m in enumerate(trainer.members):  # initialised under each member's seed
        plain = m.discriminators[name].net[0].weight
        torch.testing.assert_close(stacked[k], plain.t(), rtol=0, atol=0)
    assert not torch.equal(stacked[0], stacked[1])
    assert trainer.optimizers["discriminators"].lr == 1e-3


def test_an_x_sample_is_the_plain_draw(tmp_path: Path) -> None:
    """x ~ p(x|z) from the same uniform noise: hard (score function) in {0, 1} without a
    gradient, straight-through hard in value with the relaxed gradient."""
    e = experiment(3, "idx", tmp_path, preset="infogan")
    trainer = Trainer([e])
    x = torch.stack([next(trainer.members[0].batches)])
    noise = {"z_p": torch.randn(1, 32, 4), "x_p": torch.rand(1, 32, x.shape[-1])}
    hard = ForwardRecord(trainer.model, x, noise, "score-function").x_p
    relaxed = ForwardRecord(trainer.model, x, noise, "straight-through").x_p
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and not hard.requires_grad
    assert set(relaxed.detach().unique().tolist()) <= {0.0, 1.0} and relaxed.requires_grad
