"""What one GP ask costs: Optuna's GPSampler at its defaults against `RungAwareGP`'s effort.

A rolling GP search asks the study each time a member ends, with the other members of both
trials still running: those enter the batch acquisition (qLogEHVI) as pending points. This
times asks in that state on the 4-multiplier benchmark's box (configs/lagrangian-mog.yaml:
α2 and three λ, the λ on a log scale) after `--told` results of a made-up two-objective
function (smooth, with a collapsed corner as the real space has), with `--running` points
pending, one torch thread. With `greenlet` installed (a dependency) Optuna runs its local
searches as one batch; `--without-greenlet` hides it, to show what it adds. The two samplers
alternate over `--rounds` rounds; each round builds a fresh study and sampler, asks once to
fit the kernels (not counted: a search fits them from scratch only on its first ask), then
times `--asks` asks. Prints the median CPU seconds per ask of each side and their ratio, and
one JSON line.

    python bench/gp_asks.py [--told 12 24] [--running 7] [--asks 3] [--rounds 3]
                            [--without-greenlet]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--without-greenlet" in sys.argv:  # before Optuna looks for it, at its import
    sys.modules["greenlet"] = None  # type: ignore[assignment]

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from optuna.distributions import FloatDistribution  # noqa: E402

from experiment.rung_values import ACQUISITION_EFFORT, RungAwareGP  # noqa: E402

BOX = {
    "alpha2": FloatDistribution(-1.0, 1.0),
    "lambda_kl_x": FloatDistribution(0.5, 5.0, log=True),
    "lambda_kl_z": FloatDistribution(0.1, 10.0, log=True),
    "lambda_mmd": FloatDistribution(1.0, 1000.0, log=True),
}


def made_up(point: dict[str, float]) -> list[float]:
    """(nll, mi): a trade-off along α2 and the MMD weight, collapsed (mi ≈ 0, nll flat) past
    α2 = 0.6 as the real space collapses at α2 = 1."""
    a, mmd = point["alpha2"], math.log10(point["lambda_mmd"])
    if a > 0.6:
        return [1.544, 0.01 * mmd]
    kl = math.log(point["lambda_kl_x"]) + 0.3 * math.log(point["lambda_kl_z"])
    return [1.39 + 0.05 * (a + 0.5) ** 2 + 0.01 * kl**2 + 0.02 * mmd, 7.0 - 3.0 * (a + 1) ** 2]


def study_with(sampler: optuna.samplers.BaseSampler, told: int, running: int) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    rng = np.random.default_rng(told)
    for _ in range(told + running):
        point = {}
        for name, d in BOX.items():
            u = rng.uniform()
            low, high = (math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high)
            value = low + u * (high - low)
            point[name] = math.exp(value) if d.log else value
        if len(study.trials) < told:
            study.add_trial(
                optuna.trial.create_trial(values=made_up(point), params=point, distributions=BOX)
            )
        else:
            study.enqueue_trial(point)
            study.ask(BOX)  # running: its point pending in the batch acquisition
    return study


def cpu_per_ask(sampler: optuna.samplers.BaseSampler, told: int, running: int, asks: int) -> float:
    study = study_with(sampler, told, running)
    study.tell(study.ask(BOX), state=optuna.trial.TrialState.FAIL)  # fits the kernels
    times = []
    for _ in range(asks):
        start = time.process_time()
        trial = study.ask(BOX)
        times.append(time.process_time() - start)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # the same state for the next
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--told", type=int, nargs="+", default=[12, 24])
    parser.add_argument("--running", type=int, default=7)
    parser.add_argument("--asks", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--without-greenlet", action="store_true", help="Optuna's sequential path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    sides = {
        "optuna_default": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=4),
        "ours": lambda: RungAwareGP(seed=0, n_startup_trials=4),
    }
    rows = []
    from optuna._gp import batched_lbfgsb

    batched = batched_lbfgsb._greenlet_imports.is_successful()
    print(
        f"CPU s per GP ask, {args.running} running; ours: {ACQUISITION_EFFORT}; "
        f"local searches {'batched (greenlet)' if batched else 'one after the other'}",
        file=sys.stderr,
    )
    for told in args.told:
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, make in sides.items():
                seconds[name].append(cpu_per_ask(make(), told, args.running, args.asks))
        row = {"told": told, **{n: statistics.median(s) for n, s in seconds.items()}}
        row["ratio"] = row["ours"] / row["optuna_default"]
        rows.append(row)
        print(
            f"told {told:3d}: Optuna's defaults {row['optuna_default']:.3f} s, "
            f"ours {row['ours']:.3f} s ({row['ratio']:.2f}x)",
            file=sys.stderr,
        )
    out = {"benchmark": "gp_asks", "running": args.running, "greenlet": batched, "rows": rows}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
