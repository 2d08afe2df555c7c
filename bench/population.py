"""K sequential runs (K trainers of one member) against one trainer of the same K members.

Members are the quick demo's experiment (configs/quick.yaml, the 1-D mixture) with K different
multipliers and seeds, for each objective: `infovae` (the demo's: β-ELBO + λ MMD(q(z)||p(z)),
β over [0.2, 2], λ over [1, 1000]) and `beta-vae` (β alone). For each network width it times
the training steps only (construction and evaluation excluded), both sides with `--threads`
torch threads, and prints one JSON line: samples/s of all members together for each side, and
the ratio, keyed "<objective> 2x<width>". Time is this process's CPU time, the two sides
alternating in rounds (see `rates`).

    python bench/population.py                           # K = 16, 2x64 and 2x1024 (~3 min)
    python bench/population.py --k 4 --widths 64 --steps 100 --objectives infovae
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiment.config import Experiment, experiment_from_dict  # noqa: E402
from experiment.typed_yaml import load_mapping  # noqa: E402
from training.trainer import Trainer  # noqa: E402

QUICK = Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"


def member_experiments(k: int, hidden: int, threads: int, preset: str) -> list[Experiment]:
    """K members of the quick demo at width `hidden`: β spread over [0.2, 2], λ (infovae)
    over [1, 1000] (log), seed 100 + member."""
    out = []
    for member in range(k):
        share = member / max(k - 1, 1)
        data = load_mapping(QUICK)
        data["objective"] = {"preset": preset, "beta": 0.2 + 1.8 * share}
        if preset == "infovae":
            data["objective"]["lambda"] = 10 ** (3 * share)
        data["seed"] = 100 + member
        data["model"]["hidden"] = hidden
        data["train"]["threads"] = threads
        out.append(experiment_from_dict(data))
    return out


def rates(experiments: list[Experiment], steps: int, rounds: int) -> tuple[float, float]:
    """Samples/s of K trainers of one member run one after the other, and of one trainer of the
    same K members (training steps only), in CPU seconds of this process: on a shared machine
    the wall clock also counts the time others hold the core. The two sides alternate over
    `rounds` rounds (each a share of `steps`), so a slower or faster stretch of the machine
    falls on both."""
    trainers = [Trainer(e) for e in experiments]
    population = Trainer(experiments)
    for trainer in trainers:
        trainer.train_steps(1)  # warm-up, untimed on both sides
    population.train_steps(1)
    seconds = [0.0, 0.0]
    share = max(1, steps // rounds)
    for _ in range(rounds):
        start = time.process_time()
        for trainer in trainers:
            trainer.train_steps(share)
        middle = time.process_time()
        population.train_steps(share)
        seconds[0] += middle - start
        seconds[1] += time.process_time() - middle
    samples = len(experiments) * share * rounds * experiments[0].train.batch_size
    return samples / seconds[0], samples / seconds[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=16, help="members")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 1024], help="hidden units")
    parser.add_argument("--steps", type=int, default=200, help="steps at width 64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the two sides")
    parser.add_argument("--objectives", nargs="+", default=["infovae", "beta-vae"])
    args = parser.parse_args(argv)
    result: dict[str, object] = {"k": args.k, "threads": args.threads, "layers": 2, "clock": "cpu"}
    for preset in args.objectives:
        for hidden in args.widths:
            result[f"{preset} 2x{hidden}"] = compare(args.k, hidden, args, preset)
    print(json.dumps(result))
    return 0


def compare(k: int, hidden: int, args: argparse.Namespace, preset: str) -> dict[str, object]:
    """Both sides for one objective and width; wider networks take fewer steps."""
    steps = max(20, args.steps * 64 // hidden)
    experiments = member_experiments(k, hidden, args.threads, preset)
    sequential, population = rates(experiments, steps, args.rounds)
    return {
        "steps": steps,
        "batch_size": experiments[0].train.batch_size,
        "sequential_samples_per_s": round(sequential, 1),
        "population_samples_per_s": round(population, 1),
        "ratio": round(population / sequential, 2),
    }


if __name__ == "__main__":
    sys.exit(main())
