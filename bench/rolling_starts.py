"""A rolling trial's slot starts: every slot staggered against the start-up's slots at once.

One rolling trial of `--slots` slots trains its share of the 4-D benchmark search
(configs/lagrangian-mog.yaml: 32 members over 2 concurrent trials, so 16 here) against a
study on a temporary journal (random points: the asks cost nothing, the training is the
same either way), in this process, no Ray, one torch thread. Two rules for the slots' first
steps (`search.rolling.slot_starts`):
- staggered: every slot after the first starts later, j/K of a member's steps (the rule
  before the start-up counted);
- start-up at once: the slots whose first point the sampler asks blind anyway (tpe's
  start-up, this trial's share) start at step 0, the rest staggered.
A staggered slot's masked member still computes (docs/SEARCH.md, "Rolling populations"), so
the trial's joint steps are its cost. Prints, per rule, the joint steps (exact) and the CPU
seconds of this process (the two rules alternating over `--rounds` rounds, median), and one
JSON line.

    python bench/rolling_starts.py [--slots 4] [--members 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import torch  # noqa: E402

from experiment.config import load_experiment  # noqa: E402
from search import rolling  # noqa: E402
from search.members import SLOTS  # noqa: E402
from search.plan import plan_search  # noqa: E402
from search.space_config import parse_space  # noqa: E402
from search.study import FamilyStudy, make_sampler  # noqa: E402
from search.trial import TrialIO  # noqa: E402
from training.trainer import Trainer  # noqa: E402

SPACE = ROOT / "configs" / "lagrangian-mog.yaml"
SLOT_STARTS = rolling.slot_starts  # the trial's rule


def every_slot_staggered(size: int, at_once: int, steps: int, unit: int) -> list[int]:
    """The rule before the start-up counted: only the first slot starts at once."""
    return SLOT_STARTS(size, 1, steps, unit)


RULES = {"staggered": every_slot_staggered, "start-up at once": SLOT_STARTS}


def one_trial(rule: str, slots: int, members: int, seed: int) -> tuple[int, float]:
    """(joint steps, CPU seconds) of one rolling trial of `members` under `rule`."""
    experiment = load_experiment(SPACE, [f"search.seed={seed}"])
    steps = [0]
    train_steps = Trainer.train_steps

    def counted(self: Trainer, n: int) -> None:
        steps[0] += n
        train_steps(self, n)

    with tempfile.TemporaryDirectory() as folder:
        e = experiment.with_values({"search.sampler": "random"})  # the study's: asks are free
        study = FamilyStudy(
            str(Path(folder) / "optuna.journal"),
            e,
            parse_space(e),
            make_sampler(plan_search(e, storage_root=str(Path(folder) / "plan"))),
            tuple(experiment.search.modes),
            owner="bench",
            budget=members,
        )
        io = TrialIO(
            report=lambda result, directory: None,
            open_checkpoint=lambda path: nullcontext(path),
            study=study,
            trial_id="t",
        )
        rolling.slot_starts = RULES[rule]  # the trial's rule (the experiment's sampler: tpe)
        Trainer.train_steps = counted  # type: ignore[method-assign]
        try:
            start = time.process_time()
            rolling.train_rolling({SLOTS: slots}, experiment, io)
            seconds = time.process_time() - start
        finally:
            rolling.slot_starts, Trainer.train_steps = SLOT_STARTS, train_steps  # type: ignore[method-assign]
    return steps[0], seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--members", type=int, default=16, help="the trial's share of 32")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    found: dict[str, dict[str, Any]] = {r: {"steps": [], "cpu_s": []} for r in RULES}
    for round_ in range(args.rounds):
        for rule in RULES:
            steps, seconds = one_trial(rule, args.slots, args.members, seed=round_)
            found[rule]["steps"].append(steps)
            found[rule]["cpu_s"].append(seconds)
            print(
                f"round {round_} {rule}: {steps} joint steps, {seconds:.1f} CPU s", file=sys.stderr
            )
    out = {
        r: {"steps": v["steps"][0], "cpu_s": statistics.median(v["cpu_s"])}
        for r, v in found.items()
    }
    old, new = out["staggered"], out["start-up at once"]
    out["steps_ratio"] = round(new["steps"] / old["steps"], 3)
    out["cpu_ratio"] = round(new["cpu_s"] / old["cpu_s"], 3)
    print(
        f"{args.slots} slots, {args.members} members: staggered {old['steps']} steps "
        f"{old['cpu_s']:.1f} s; start-up at once {new['steps']} steps {new['cpu_s']:.1f} s "
        f"(x{out['steps_ratio']} steps, x{out['cpu_ratio']} CPU)",
        file=sys.stderr,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
