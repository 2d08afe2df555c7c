"""The demo's search part: population trials against one configuration per trial, side by side.

Times the search `make demo` runs (configs/quick.yaml: its trials of the InfoVAE on the
embedded mixture, 2 at a time) in fresh processes, one side after the other:

- `population=1`: this tree, one configuration per Ray trial;
- `population=<file>`: this tree with the file's own `search.population` (or --population);
- `baseline`: with --baseline REF, the tree at git REF (e.g. the commit before population
  trials) checked out in a temporary worktree, running its own configs/quick.yaml.

The timed region is the search itself (`search.tune.run_search`: trials, checkpoints,
trials.csv, the Optuna study) with Ray already started and no dashboard, in each side's own
code; Ray's start-up and the dashboard are fixed costs outside it. Sides alternate when
--repeats > 1 and the median is kept. Prints one JSON line: seconds per side, ratios against
each single-configuration side, and each side's best nll and largest mi (the points differ:
the sampler sees results at different moments).

Every side runs `--num-samples` points (default 16, the demo's budget when the figures in
docs/BENCHMARKS.md were taken; the file now asks 20), so a baseline tree whose file asks a
different number is timed on the same work.

    python bench/demo_search.py [--baseline 90171c7] [--population auto] [--repeats 1]
                                [--num-samples 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from child import run_child  # noqa: E402

CHILD = """
import json, logging, os, sys, time
sys.path.insert(0, ".")
import ray
if os.path.isdir("experiment"):
    from experiment.config import load_experiment
else:  # a tree from before the experiment layer (90171c7): else the installed one is found
    from search.config import load_experiment
from search.tune import run_search
experiment = load_experiment("configs/quick.yaml", {overrides!r})
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
start = time.perf_counter()
plan, study = run_search(experiment, storage_root={storage!r})
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "csv": str(plan.trials_csv)}}))
"""


def timed_search(tree: Path, overrides: list[str], storage: Path) -> dict[str, float]:
    """One search of `tree`'s demo file in a fresh process (its Ray workers import `tree`)."""
    code = CHILD.format(overrides=overrides, storage=str(storage))
    result = run_child(code, tree, f"search in {tree} {overrides}")
    with open(result["csv"], newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    return {
        "seconds": result["seconds"],
        "trials": len(rows),
        "best_nll": min(float(r["nll"]) for r in rows),
        "max_mi": max(float(r["mi"]) for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", default=None, help="the population side (default: file)")
    parser.add_argument("--baseline", default=None, help="a git ref to time as well")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--num-samples", type=int, default=16, help="points, every side")
    args = parser.parse_args(argv)
    budget = f"search.num_samples={args.num_samples}"
    population = args.population or _file_population()
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "population=1": (ROOT, ["search.population=1", budget]),
            f"population={population}": (ROOT, [f"search.population={population}", budget]),
        }
        baseline = Path(tmp) / "baseline"
        if args.baseline:
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            sides = {f"baseline {args.baseline}": (baseline, [budget]), **sides}
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        try:
            for _ in range(args.repeats):
                for side, (tree, overrides) in sides.items():
                    storage = Path(tmp) / "results" / f"{len(runs[side])}-{side}"
                    runs[side].append(timed_search(tree, overrides, storage))
                    print(f"{side}: {runs[side][-1]['seconds']:.1f} s", file=sys.stderr)
        finally:
            if args.baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT)
    seconds = {side: statistics.median(r["seconds"] for r in rs) for side, rs in runs.items()}
    fastest = seconds[f"population={population}"]
    result: dict[str, object] = {"experiment": "configs/quick.yaml", "repeats": args.repeats}
    for side, rs in runs.items():
        result[side] = {
            "search_s": round(seconds[side], 1),
            "speedup_of_population": round(seconds[side] / fastest, 2),
            "trials": rs[-1]["trials"],
            "best_nll": round(rs[-1]["best_nll"], 4),
            "max_mi": round(rs[-1]["max_mi"], 4),
        }
    print(json.dumps(result))
    return 0


def _file_population() -> str:
    import yaml

    quick = ROOT / "configs" / "quick.yaml"
    return str(yaml.safe_load(quick.read_text()).get("search", {}).get("population", 1))


if __name__ == "__main__":
    sys.exit(main())
