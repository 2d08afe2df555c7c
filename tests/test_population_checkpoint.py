"""Trainer checkpoints (training/trainer.py): a population saved after 50
steps and loaded into a fresh one goes on exactly as the uninterrupted run, bit for bit on CPU
(metrics and parameters, discriminators and optimiser states included), a diverged member
staying diverged."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_population import IGNORED, member

from experiment.config import Experiment, experiment_from_dict
from training.trainer import Trainer

STEPS = 100


def resumable(seed: int, **objective: Any) -> Experiment:
    """`test_population.member` for 100 steps evaluated at 50, with two discriminator updates
    per model step (so the discriminators' own steps are resumed too)."""
    data = member(seed, **objective).to_dict()
    data["train"] |= {"steps": STEPS, "eval_every": STEPS // 2, "disc_steps": 2}
    return experiment_from_dict(data)


def poisoned(experiments: list[Experiment]) -> Trainer:
    """A population whose member 1 has a NaN weight: it diverges at its first step."""
    population = Trainer(experiments)
    with torch.no_grad():
        population.model.encoder.net[0].weight_t[1].fill_(math.nan)
    return population


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal metrics (NaN equal to NaN), timing aside."""
    assert a.keys() == b.keys()
    for key in a.keys() - IGNORED:
        x, y = a[key], b[key]
        if not (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))):
            return False
    return True


def states(population: Trainer) -> dict[str, torch.Tensor]:
    """Every tensor a step reads: parameters and the optimisers' moments."""
    out = {f"model.{k}": v for k, v in population.model.state_dict().items()}
    out |= {f"disc.{k}": v for k, v in population.loss.state_dict().items()}
    for group, optimizer in population.optimizers.items():
        state = optimizer.state_dict()
        for name in ("exp_avg", "exp_avg_sq"):
            out |= {f"{group}.{name}.{i}": v for i, v in enumerate(state[name])}
        out[f"{group}.steps"] = state["steps"]
    return out


def test_a_resumed_population_goes_on_exactly(tmp_path: Path) -> None:
    objectives = [{"preset": "kl-infovae", "lambda1": 2.0 + k, "lambda2": 1.0} for k in range(3)]
    experiments = [resumable(20 + k, **o) for k, o in enumerate(objectives)]
    whole = poisoned(experiments)
    uninterrupted = list(whole.run())
    assert len(uninterrupted) == 2  # at step 50 and at the end

    first = poisoned(experiments)
    rounds = first.run()
    halfway = next(rounds)
    path = first.save_checkpoint(tmp_path)
    assert path == tmp_path / "trainer.pt" and not list(tmp_path.glob("*.tmp"))
    del first, rounds

    resumed = Trainer(experiments)  # unpoisoned: the checkpoint brings member 1's NaN back
    resumed.load_checkpoint(tmp_path)
    assert [m.step for m in resumed.members] == [50, 0, 50]
    rest = list(resumed.run())
    assert len(rest) == 1, "the resumed run goes on from step 50 to the end"
    for a, b in zip([halfway, *rest], uninterrupted, strict=True):
        for k in range(len(experiments)):
            assert same(a[k], b[k]), (k, a[k], b[k])
    final = rest[-1]
    assert [m["status"] for m in final] == ["ok", "diverged", "ok"]
    assert [m["step"] for m in final] == [STEPS, 0, STEPS] and final[1]["diverged_step"] == 1
    expected, got = states(whole), states(resumed)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True, msg=key)


def test_a_checkpoint_fits_only_its_population(tmp_path: Path) -> None:
    population = Trainer([member(1), member(2)])
    population.train_steps(2)
    population.save_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="holds 2 members"):
        Trainer([member(1)]).load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        population.load_checkpoint(tmp_path / "elsewhere")
