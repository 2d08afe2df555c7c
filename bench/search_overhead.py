"""What the search machinery costs: the same trials through `run_search` and a plain loop.

Both sides train the same N points (Optuna's RandomSampler with one seed proposes the same
(α, λ) sequence to both) of the MMD-VAE on the embedded mog data with the real Trainer, one
trial at a time, one CPU thread each. The plain side is an in-process Optuna ask/tell loop;
the search side is `search.tune.run_search` (a local Ray started and stopped inside the timed
region, checkpoints, trials.csv, the SQLite study). Prints one JSON line:

    {"trials": N, "trial_s": ..., "plain_s": ..., "search_s": ..., "ratio": search/plain, ...}

The target is ratio <= 1.5 for trials of 10 s or more; the defaults (short trials) run in a
couple of minutes and show the fixed costs. Scale with --steps / --hidden / --trials.

    python bench/search_overhead.py [--trials 6] [--steps 600] [--hidden 64] [--concurrent 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from experiment.config import Experiment, experiment_from_dict  # noqa: E402
from search.space_config import parse_space  # noqa: E402
from search.study import distributions  # noqa: E402
from search.tune import run_search  # noqa: E402
from training.trainer import Trainer  # noqa: E402


def experiment(args: argparse.Namespace) -> Experiment:
    return experiment_from_dict(
        {
            "name": "overhead",
            "seed": 0,
            "dataset": {"name": "mog"},
            "model": {"hidden": args.hidden},
            "objective": {"preset": "mmd-vae", "alpha": 0.0, "lambda": 10.0},
            "train": {
                "steps": args.steps,
                "eval_every": args.eval_every,
                "eval_size": args.eval_size,
                "threads": 1,
            },
            "space": {"family": "mmd-vae"},
            "search": {
                "num_samples": args.trials,
                "max_concurrent": args.concurrent,
                "sampler": "random",
                "seed": 0,
            },
            "resources": {"cpu": 1},
        }
    )


def plain_loop(base: Experiment) -> tuple[float, list[float]]:
    """An in-process Optuna ask/tell loop over the same space and sampler."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = distributions(parse_space(base))
    study = optuna.create_study(
        directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    start = time.perf_counter()
    nll = []
    for _ in range(base.search.num_samples):
        trial = study.ask(space)
        trainer = Trainer(base.with_values(trial.params), threads=1)
        metrics = list(trainer.run())[-1][0]
        study.tell(trial, [metrics["nll"], metrics["mi"]])
        nll.append(metrics["nll"])
    return time.perf_counter() - start, nll


def through_search(base: Experiment) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout: the JSON line alone
            plan, _ = run_search(
                base, storage_root=storage, num_cpus=max(2, base.search.max_concurrent)
            )
        seconds = time.perf_counter() - start
        lines = plan.trials_csv.read_text().splitlines()
    header = lines[0].split(",")
    nll = [float(line.split(",")[header.index("nll")]) for line in lines[1:]]
    return seconds, nll


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--concurrent", type=int, default=1, help="trials at a time (search)")
    args = parser.parse_args(argv)
    base = experiment(args)
    plain_s, plain_nll = plain_loop(base)
    search_s, search_nll = through_search(base)
    report = {
        "trials": args.trials,
        "steps": args.steps,
        "trial_s": round(plain_s / args.trials, 2),
        "plain_s": round(plain_s, 2),
        "search_s": round(search_s, 2),
        "ratio": round(search_s / plain_s, 3),
        "same_results": sorted(round(v, 4) for v in plain_nll)
        == sorted(round(v, 4) for v in search_nll),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
