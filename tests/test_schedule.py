"""Learning-rate schedules (`train.lr_schedule`, training/schedule.py): each kind against its
closed form, the rate each update of a trainer really used, a resume that goes on bit for bit
with a schedule running, and the one-line refusals (bad schedules, another schedule on resume,
members with different schedules in one population)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_population import IGNORED, member
from test_population_checkpoint import states

from experiment.config import ConfigError, LrScheduleConfig, experiment_from_dict
from training.members import apart
from training.schedule import lr_factor
from training.trainer import Trainer


def test_each_kind_is_its_closed_form() -> None:
    assert {lr_factor(LrScheduleConfig(), s, 10) for s in (0, 5, 10**6)} == {1.0}
    authors = LrScheduleConfig("step", (10000, 100000), (0.1, 0.01))
    expected = {0: 1.0, 9999: 1.0, 10000: 0.1, 99999: 0.1, 100000: 0.01, 499999: 0.01}
    assert {s: lr_factor(authors, s, 500000) for s in expected} == expected
    cosine = LrScheduleConfig("cosine", min_factor=0.1)
    for step, total in [(0, 40), (10, 40), (20, 40), (33, 40), (40, 40), (90, 40)]:
        t = min(step, total) / total
        assert math.isclose(
            lr_factor(cosine, step, total), 0.1 + 0.9 * (1 + math.cos(math.pi * t)) / 2
        )
    assert lr_factor(cosine, 20, 40) == pytest.approx(0.55)
    assert lr_factor(LrScheduleConfig("cosine", steps=10), 5, 1000) == pytest.approx(0.5)


def scheduled(schedule: dict[str, Any], steps: int = 20, **train: Any) -> Any:
    data = member(3, eval_every=steps // 2).to_dict()
    data["train"] |= {"steps": steps, "lr_schedule": schedule, **train}
    return experiment_from_dict(data)


def test_each_update_uses_the_scheduled_rate() -> None:
    trainer = Trainer(scheduled({"kind": "step", "milestones": [2, 4], "factors": [0.5, 0.25]}))
    optimizer = trainer.optimizers["model"]
    seen = []
    original = optimizer.step

    def step(*args: Any, **kwargs: Any) -> Any:
        seen.append(optimizer.lrs[0])
        return original(*args, **kwargs)

    optimizer.step = step  # type: ignore[method-assign]
    trainer.train_steps(6)
    assert seen == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4]


def test_a_scheduled_run_resumes_bit_for_bit(tmp_path: Path) -> None:
    """Saved at step 10 of a 20-step cosine and resumed: the same parameters, Adam moments and
    final metrics as 20 uninterrupted steps; and the schedule did change them."""
    experiment = scheduled({"kind": "cosine"})
    whole = Trainer(experiment)
    final = list(whole.run())[-1][0]
    first = Trainer(experiment)
    next(first.run())  # up to the evaluation at step 10
    first.save_checkpoint(tmp_path)
    resumed = Trainer(experiment)
    resumed.load_checkpoint(tmp_path)
    again = list(resumed.run())[-1][0]
    assert {k: v for k, v in again.items() if k not in IGNORED} == {
        k: v for k, v in final.items() if k not in IGNORED
    }
    mine, theirs = states(resumed), states(whole)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[key], theirs[key]) for key in mine)
    constant = Trainer(scheduled({"kind": "constant"}))
    constant.train_steps(20)
    assert not all(torch.equal(v, theirs[k]) for k, v in states(constant).items())


def test_another_schedule_on_resume_is_refused(tmp_path: Path) -> None:
    trainer = Trainer(scheduled({"kind": "cosine"}))
    trainer.train_steps(2)
    trainer.save_checkpoint(tmp_path)
    longer = Trainer(scheduled({"kind": "cosine"}, steps=40))  # its horizon moved
    with pytest.raises(ValueError, match="was trained with train.lr_schedule") as error:
        longer.load_checkpoint(tmp_path)
    assert "\n" not in str(error.value)
    Trainer(scheduled({"kind": "cosine", "steps": 20}, steps=40)).load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"kind": "step", "milestones": [5]}, "train.lr_schedule.factors: kind step needs"),
        ({"kind": "step", "milestones": [5, 5], "factors": [1, 1]}, "milestones: must be incr"),
        ({"kind": "step", "milestones": [5], "factors": [0]}, "factors must be > 0"),
        ({"kind": "cosine", "min_factor": 2}, "min_factor in"),
        ({"kind": "constant", "milestones": [3]}, "belong to kind: step"),
        ({"kind": "step", "milestones": [3], "factors": [1], "steps": 4}, "steps: a positive"),
        ({"kind": "linear"}, "train.lr_schedule.kind: 'linear' is not one of"),
    ],
)
def test_a_bad_schedule_is_one_line(schedule: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as error:
        scheduled(schedule)
    assert "\n" not in str(error.value)


def test_members_share_the_schedule() -> None:
    a, b = scheduled({"kind": "constant"}), scheduled({"kind": "cosine"})
    assert apart(a, b) == "members differ in train.lr_schedule"
    with pytest.raises(ConfigError, match="members differ in train.lr_schedule"):
        Trainer([a, b])
