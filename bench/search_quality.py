"""What a search finds per CPU-second: anytime hypervolume of (nll, mi), method by method.

Runs each method on each space, one search after the other (seed by seed: every method of
one seed, then the next seed), each in a fresh process with its own local Ray started before
its clock starts (bench/demo_search.py's way); a run's clock starts when its search starts.
Every method of a space is scored against one reference point: the space's fixed one
(`REFERENCES_FIXED`, the same in every run, so hypervolumes compare across runs and one
blown-up trial cannot stretch the box), or with `--quick`, whose short runs end elsewhere,
`analysis.pareto.reference_point` over the usable trials of all its runs. A trial's time is
when the Optuna journal says it was told (its `datetime_complete`), its steps its trials.csv
`step`; a trial counts for the front when it ended `ok` (`analysis.pareto.usable_mask`).

Methods (`--methods`, overrides beside `search.seed=<seed>`; the file's max_concurrent kept):
- grid, random, tpe-seq, gp-seq: one configuration per Ray trial (`search.population=1`);
- tpe-fixed: today's fixed populations (`search.refill=false`);
- tpe-rolling, gp-rolling: rolling populations (`search.refill=true`, 4 slots a trial), and
  with multi-objective successive halving (`-halving`: `search.scheduler=halving`, 8 slots a
  trial and twice the members, which trains about the steps of the others), and with a placed
  start-up (`-oa`: `search.startup=orthogonal`, `search.startup`);
- tpe-rolling-anytime: tpe-rolling asking 1.5× the members, for its curve at fixed times, and
  tpe-rolling-oa-anytime the same with the placed start-up;
- tpe-gp-rolling: rolling populations whose asks TPE and the GP take in turns
  (`search.sampler=tpe-gp`);
- tpe-rolling-8: rolling TPE with 8 slots a trial and twice the members, and
  tpe-rolling-oa-8 the same with the placed start-up.
A method whose overrides this tree does not know (a ConfigError) is skipped and says so.

Spaces: infovae-2d (configs/quick.yaml, the demo) and lagrangian-4d
(configs/lagrangian-mog.yaml: α2 and the λ of three divergence terms).

Prints tables (hypervolume against seconds and against steps, mean over seeds; ratios each
against grid and tpe-seq, mean [min-max] over seeds) to stderr, one JSON line to stdout, and
writes <out>/search_quality.html (+ .png with a browser): hypervolume against seconds, one
line per method, shaded over seeds.

    python bench/search_quality.py [--quick] [--seeds 3] [--first-seed 0] [--methods grid,tpe-seq]
                                   [--out DIR]
    python bench/search_quality.py --rescore [--out DIR]   # the tables again from the kept runs

Each search's result is kept beside its runs (<out>/runs/<space>/<method>/<seed>/run.json),
so `--rescore` reads every kept run back and prints the tables without training anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from child import run_child  # noqa: E402
from quality_curves import Spread, hv_ratio_at, reach_ratio, spread  # noqa: E402
from quality_report import figure, run_json, run_table, write_figure  # noqa: E402
from quality_runs import Run, read_run, relocated, score  # noqa: E402

from experiment.config import ConfigError, load_experiment  # noqa: E402

ONE_PER_TRIAL = ["search.population=1"]
METHODS: dict[str, list[str]] = {
    "grid": ["search.sampler=grid", *ONE_PER_TRIAL],
    "random": ["search.sampler=random", *ONE_PER_TRIAL],
    "tpe-seq": ["search.sampler=tpe", *ONE_PER_TRIAL],
    "gp-seq": ["search.sampler=gp", *ONE_PER_TRIAL],
    "tpe-fixed": ["search.sampler=tpe", "search.population=auto", "search.refill=false"],
    "tpe-rolling": ["search.sampler=tpe", "search.population=4", "search.refill=true"],
    "tpe-rolling-halving": [
        "search.sampler=tpe",
        "search.population=8",
        "search.refill=true",
        "search.scheduler=halving",
    ],
    "gp-rolling": ["search.sampler=gp", "search.population=4", "search.refill=true"],
    "tpe-rolling-oa": [
        "search.sampler=tpe",
        "search.population=4",
        "search.refill=true",
        "search.startup=orthogonal",
    ],
    "gp-rolling-oa": [
        "search.sampler=gp",
        "search.population=4",
        "search.refill=true",
        "search.startup=orthogonal",
    ],
    "gp-rolling-halving": [
        "search.sampler=gp",
        "search.population=8",
        "search.refill=true",
        "search.scheduler=halving",
    ],
    "tpe-rolling-anytime": ["search.sampler=tpe", "search.population=4", "search.refill=true"],
    "tpe-rolling-oa-anytime": [
        "search.sampler=tpe",
        "search.population=4",
        "search.refill=true",
        "search.startup=orthogonal",
    ],
    "tpe-gp-rolling": ["search.sampler=tpe-gp", "search.population=4", "search.refill=true"],
    "tpe-rolling-8": ["search.sampler=tpe", "search.population=8", "search.refill=true"],
    "tpe-rolling-oa-8": [
        "search.sampler=tpe",
        "search.population=8",
        "search.refill=true",
        "search.startup=orthogonal",
    ],
}
# Members asked, as a multiple of the space's budget. Halving stops most members at 1/9 or
# 1/3 of their steps, so a halving search gets twice the members: it then trains about as
# many steps as the others (docs/BENCHMARKS.md), and its 8 slots a trial turn over fast
# enough to stay adaptive (a member-step costs less at K = 8). `-anytime` is rolling TPE
# asking more members than it finishes by a quarter of the grid's time: its first 32 are
# asked as tpe-rolling's (the start-up is 10 points either way), so its curve up to then is
# what a search with a deadline finds, where tpe-rolling stops at its budget.
# `tpe-rolling-8` holds 8 slots a trial, where a member-step costs about 0.6 of one at 4
# (docs/BENCHMARKS.md, "The population step"), and asks twice the members: like `-anytime`,
# more than it finishes by a quarter of the grid's time; `tpe-rolling-oa-8` is the same with
# the placed start-up.
BUDGET_FACTOR = {
    "tpe-rolling-halving": 2,
    "gp-rolling-halving": 2,
    "tpe-rolling-anytime": 1.5,
    "tpe-rolling-oa-anytime": 1.5,
    "tpe-rolling-8": 2,
    "tpe-rolling-oa-8": 2,
}
QUICK_METHODS = ("grid", "tpe-seq", "tpe-fixed", "gp-rolling-halving")
REFERENCES = ("grid", "tpe-seq")  # what every ratio is taken against
# "hypervolume at equal wall time": parts of the reference's wall time (1/4 of the grid's is
# issue 16's target)
AT_FRACTIONS = (0.25, 0.5, 1.0)
# space -> the fixed reference point (nll, mi): the worst usable trial's plus the usual margin
# in the runs where the tables of docs/RESULTS.md section 3.3 were first measured (the 2-D
# space's third session, the 4-D space's tenth); a trial beyond it adds no hypervolume
REFERENCES_FIXED = {"infovae-2d": (1.561, -0.528), "lagrangian-4d": (1.567, -0.712)}
RUN_FILE = "run.json"
# space -> (file, the grid's trials, everyone else's, --quick's overrides for all, --quick's
# grid and others): the grid is a full grid (3^4 = 81 on the 4-D space: what makes it dear)
SPACES = {
    "infovae-2d": ("configs/quick.yaml", 16, 16, ["train.steps=600", "train.eval_every=300"], 9, 9),
    "lagrangian-4d": (
        "configs/lagrangian-mog.yaml",
        81,
        32,
        ["train.steps=500", "train.eval_every=250"],
        16,
        12,
    ),
}

CHILD = """
import json, logging, sys, time
sys.path[:0] = [".", "bench"]
import ray
from experiment.config import load_experiment
from quality_runs import child_result
from search.tune import run_search
experiment = load_experiment({path!r}, {overrides!r})
ray.init(address="local", num_cpus={cpus}, include_dashboard=False, logging_level=logging.WARNING)
start = time.time()
plan, study = run_search(experiment, storage_root={storage!r})
print(json.dumps(child_result(plan, start, time.time())))
"""


def overrides_of(space: str, method: str, seed: int, quick: bool) -> list[str]:
    path, grid_n, n, quick_set, quick_grid_n, quick_n = SPACES[space]
    samples = (quick_grid_n if quick else grid_n) if method == "grid" else (quick_n if quick else n)
    samples = round(samples * BUDGET_FACTOR.get(method, 1))
    return [*METHODS[method], f"search.num_samples={samples}", f"search.seed={seed}"] + (
        quick_set if quick else []
    )


def search(space: str, method: str, seed: int, quick: bool, storage: Path, cpus: int) -> Run:
    path = SPACES[space][0]
    overrides = overrides_of(space, method, seed, quick)
    code = CHILD.format(path=path, overrides=overrides, storage=str(storage), cpus=cpus)
    result = run_child(code, ROOT, f"{space} {method} seed {seed}")
    storage.mkdir(parents=True, exist_ok=True)
    (storage / RUN_FILE).write_text(json.dumps(result | {"quick": quick}))
    return read_run(method, seed, result)


def kept_runs(runs_dir: Path, space: str) -> tuple[dict[str, list[Run]], bool]:
    """The runs a previous benchmark kept for `space` (method -> runs by seed), and whether
    they were --quick runs."""
    runs: dict[str, list[Run]] = {}
    quick = False
    for file in sorted((runs_dir / space).glob(f"*/*/{RUN_FILE}")):
        method, seed = file.parent.parent.name, int(file.parent.name)
        result = relocated(json.loads(file.read_text()), file.parent)
        quick = quick or bool(result.get("quick"))
        runs.setdefault(method, []).append(read_run(method, seed, result))
    for rs in runs.values():
        rs.sort(key=lambda r: r.seed)
    return runs, quick


def known(space: str, method: str) -> str | None:
    """None when this tree accepts the method's overrides, else the override it does not."""
    overrides = overrides_of(space, method, 0, False)
    try:
        load_experiment(ROOT / SPACES[space][0], overrides)
    except ConfigError as error:
        named = [o for o in overrides if f"{o.split('=')[0]}:" in str(error)]  # names its key
        return named[0] if named else str(error)
    return None


def ratios(runs: dict[str, list[Run]], x: str) -> dict[str, dict[str, Spread]]:
    """Per method, against each reference present, paired seed by seed: the `x` ("seconds"
    or "steps") it needs to reach the reference's final hypervolume over what the reference
    needs; with seconds also its hypervolume at 1/4, 1/2 and 1 of the reference's wall time over
    the reference's final one."""
    table: dict[str, dict[str, Spread]] = {}
    for method, mine in runs.items():
        row: dict[str, Spread] = {}
        for ref in REFERENCES:
            theirs = {r.seed: r for r in runs.get(ref, [])}
            pairs = [(m.curves[x], theirs[m.seed]) for m in mine if m.seed in theirs]
            if not pairs:
                continue
            row[f"reach {ref}"] = spread([reach_ratio(m, r.curves[x]) for m, r in pairs])
            if x == "seconds":
                for f in AT_FRACTIONS:
                    row[f"hv@{f:g}T {ref}"] = spread(
                        [hv_ratio_at(m, r.curves[x], f, r.wall_s) for m, r in pairs]
                    )
        table[method] = row
    return table


def run_space(
    space: str, names: list[str], args: argparse.Namespace, runs_dir: Path, report: dict
) -> dict[str, list[Run]]:
    """Every known method of `names` on `space`, seed by seed: every method of a seed one after
    the other, so the runs a ratio pairs are minutes apart, not the whole benchmark, when the
    machine's speed drifts."""
    runs: dict[str, list[Run]] = {}
    usable = []
    for method in names:
        why = known(space, method)
        if why is not None:
            print(f"{space} {method}: skipped: {why} not in this tree", file=sys.stderr)
            report.setdefault("skipped", {})[f"{space} {method}"] = why
        else:
            usable.append(method)
    seeds = args.seeds or (1 if args.quick else 3)
    for seed in range(args.first_seed, args.first_seed + seeds):
        for method in usable:
            storage = runs_dir / space / method / str(seed)
            run = search(space, method, seed, args.quick, storage, args.num_cpus)
            runs.setdefault(method, []).append(run)
            print(f"{space} {method} seed {seed}: {run.wall_s:.1f} s", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 methods, short runs")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ..."
    )
    parser.add_argument("--methods", default=None, help=f"comma-separated of {', '.join(METHODS)}")
    parser.add_argument("--spaces", default=",".join(SPACES))
    parser.add_argument("--num-cpus", type=int, default=2, help="each search's local Ray")
    parser.add_argument("--out", default=str(ROOT / "results" / "search-quality"))
    parser.add_argument(
        "--rescore", action="store_true", help="the tables from the runs kept in --out; no search"
    )
    args = parser.parse_args(argv)
    seeds = args.seeds or (1 if args.quick else 3)
    names = (
        args.methods.split(",") if args.methods else list(QUICK_METHODS if args.quick else METHODS)
    )
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"quick": args.quick, "seeds": seeds, "spaces": {}}
    scored: dict[str, dict[str, list[Run]]] = {}
    runs_dir = out / "runs"  # every search's results (trials.csv, journal), kept to look at
    if not args.rescore:
        shutil.rmtree(runs_dir, ignore_errors=True)
    for space in args.spaces.split(","):
        if args.rescore:
            runs, quick = kept_runs(runs_dir, space)
            if not runs:
                print(f"{space}: no kept runs in {runs_dir / space}", file=sys.stderr)
                continue
        else:
            runs, quick = run_space(space, names, args, runs_dir, report), args.quick
        reference = score(runs, None if quick else REFERENCES_FIXED.get(space))
        scored[space] = runs
        seconds, steps = ratios(runs, "seconds"), ratios(runs, "steps")
        print(run_table(space, runs, reference, seconds, steps), file=sys.stderr)
        report["spaces"][space] = {  # type: ignore[index]
            "reference": [float(v) for v in reference],
            "methods": {m: run_json(rs, seconds[m], steps[m]) for m, rs in runs.items()},
        }
    written = write_figure(figure(scored), out)
    print(f"figure: {written}", file=sys.stderr)
    report["figure"] = written
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
