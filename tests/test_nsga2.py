"""experiment.nsga2: Optuna's NSGA-II, picklable (Optuna 5.1's holds a threading.Lock)."""

from __future__ import annotations

import pickle
import threading

import optuna

from experiment.nsga2 import NSGAIISampler

LOCK = type(threading.Lock())
SPACE = {
    "x": optuna.distributions.FloatDistribution(0, 1),
    "y": optuna.distributions.FloatDistribution(0, 1),
}


def objective(trial: optuna.Trial) -> tuple[float, float]:
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
    return x + y, (1 - x) ** 2 + y


def test_a_pickled_nsga2_asks_what_the_original_asks() -> None:
    """Past its first generation (4 points), the copy and the original propose the same next
    points from the same history: its state came through; each copy has locks of its own."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = NSGAIISampler(seed=3, population_size=4)
    first = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    first.optimize(objective, n_trials=6)
    copy = pickle.loads(pickle.dumps(sampler))
    second = optuna.create_study(directions=["minimize", "minimize"], sampler=copy)
    second.add_trials(first.get_trials())
    asked = [(first.ask(SPACE).params, second.ask(SPACE).params) for _ in range(3)]
    assert all(a == b for a, b in asked) and len({str(a) for a, _ in asked}) == 3
    mine = {k: v for k, v in vars(sampler).items() if isinstance(v, LOCK)}
    theirs = {k: v for k, v in vars(copy).items() if isinstance(v, LOCK)}
    assert mine.keys() == theirs.keys()
    assert all(theirs[k] is not mine[k] for k in mine)


def test_it_writes_generations_under_optunas_keys() -> None:
    """A study begun with Optuna's NSGA-II resumes with this one: the generation keys match."""
    assert NSGAIISampler.__name__ == optuna.samplers.NSGAIISampler.__name__
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=NSGAIISampler(seed=0, population_size=4)
    )
    study.optimize(objective, n_trials=5)
    keys = {k for t in study.get_trials() for k in t.system_attrs}
    assert any(k.startswith("NSGAIISampler:") for k in keys), keys
