"""Seeded replicates of the paper's runs: plain `train` runs, resumable, and tables with error
bars (docs/RESULTS.md). No Ray: each run is `run_search.py train` of one experiment.

    python -m analysis.replicate configs/replicate-figure2-cpu.yaml [--jobs 2] [--set k=v]
    python -m analysis.replicate configs/replicate-figure2-cpu.yaml --list    # runs, states
    python -m analysis.replicate configs/replicate-figure2-cpu.yaml --tables  # tables only

A replicate file:

    replicate: figure2-cpu                  # results in <storage>/<replicate>/
    seeds: [0, 1, 2]                        # every run once per seed
    table: figure2                          # figure1 | figure2
    set: {train.steps: 20000}               # dotted overrides for every run (optional)
    groups:
      - name: beta-elbo                     # a group: one file, its own overrides, a grid
        file: paper-4.2-mnist-beta-elbo.yaml
        grid: {objective.params.beta: [0.5, 1.0, 1.5]}
      - name: infovae
        file: paper-4.2-mnist-infovae.yaml
        grid: {objective.params.beta: [1.0], objective.params.lambda: [5.0, 5000.0]}
        baseline: beta-elbo                 # figure2: compared with it at the same β

Each run trains in `<storage>/<replicate>/<group>/<values>-seed<s>/` (`config.yaml`,
`metrics.jsonl`, `checkpoint/`, `train.log`, `wall.json`). Started again, the runner skips
every finished run (its last metrics line says done), resumes an interrupted one from its
checkpoint (bit for bit on CPU) and starts the rest; `wall.json` adds up each run's seconds
over sessions. Then `tables.md` and `runs.csv` (`analysis.replicate_tables`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analysis.png import write_pngs
from analysis.replicate_plot import figure1_plot, figure2_plot
from analysis.replicate_tables import curve, finished_rows, write_tables
from experiment.config import ConfigError, Experiment, experiment_from_dict, load_experiment
from experiment.typed_yaml import load_mapping, set_dotted

TABLES = ("figure1", "figure2")


@dataclass(frozen=True)
class Run:
    group: str
    values: dict[str, Any]  # the group's grid point (dotted key -> value)
    seed: int
    experiment: Experiment
    directory: Path

    def state(self) -> str:
        """done, interrupted (a checkpoint to resume) or new."""
        lines = (self.directory / "metrics.jsonl").read_text().splitlines() if self.started else []
        if lines and json.loads(lines[-1]).get("done"):
            return "done"
        return "interrupted" if (self.directory / "checkpoint").is_dir() else "new"

    @property
    def started(self) -> bool:
        return (self.directory / "metrics.jsonl").is_file()


@dataclass(frozen=True)
class Replicate:
    name: str
    table: str
    groups: dict[str, dict[str, Any]]  # name -> its entry (file, set, grid, baseline)
    runs: tuple[Run, ...]
    home: Path


def load_replicate(
    path: Path, overrides: list[str] = (), storage: str | None = None, seeds: list[int] = ()
) -> Replicate:
    """Read a replicate file (`seeds`, when given, replace its own); every run's experiment is
    validated now (one `error:` line)."""
    data = load_mapping(path)
    unknown = sorted(set(data) - {"replicate", "seeds", "table", "set", "groups"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (see analysis/replicate.py)")
    name, groups = data.get("replicate"), data.get("groups")
    seeds = list(seeds) or data.get("seeds", [0])
    if not isinstance(name, str) or not name or not isinstance(groups, list) or not groups:
        raise ConfigError(f"{path}: give `replicate: NAME` and a list of `groups`")
    if data.get("table", "figure2") not in TABLES:
        raise ConfigError(f"{path}: table: {data.get('table')!r} is not one of {TABLES}")
    common = [f"{k}={json.dumps(v)}" for k, v in (data.get("set") or {}).items()]
    entries: dict[str, dict[str, Any]] = {}
    for entry in groups:
        if not isinstance(entry, dict) or set(entry) - {"name", "file", "set", "grid", "baseline"}:
            raise ConfigError(f"{path}: a group is {{name, file, set, grid, baseline}}")
        if entry.get("name") in entries or not entry.get("name") or not entry.get("file"):
            raise ConfigError(f"{path}: every group needs its own name and a file")
        entries[entry["name"]] = entry
    for entry in entries.values():
        if entry.get("baseline") not in (None, *entries):
            raise ConfigError(f"{path}: group {entry['name']}: no group {entry['baseline']!r}")
    first = None
    runs = []
    for entry in entries.values():
        grid = entry.get("grid") or {}
        own = [f"{k}={json.dumps(v)}" for k, v in (entry.get("set") or {}).items()]
        for point in itertools.product(*grid.values()):
            values = dict(zip(grid, point, strict=True))
            for seed in seeds:
                settings = [*common, *own, f"seed={seed}", *overrides]
                experiment = _experiment(path.parent / entry["file"], settings, values)
                first = first or experiment
                runs.append((entry["name"], values, seed, experiment))
    home = Path(storage or first.storage) / name
    built = tuple(Run(g, v, s, e, home / g / _label(v, s)) for g, v, s, e in runs)
    return Replicate(name, data.get("table", "figure2"), entries, built, home)


def _experiment(file: Path, settings: list[str], values: dict[str, Any]) -> Experiment:
    """The file with its overrides, then the grid point set as a search sets a point (so
    `objective.params.beta` wins over a `beta:` written beside the preset)."""
    experiment = load_experiment(file, settings).with_values(values)
    data = experiment.to_dict()
    data_dir = data["dataset"].get("data_dir")
    if isinstance(data_dir, str) and "://" not in data_dir:  # runs may start elsewhere
        set_dotted(data, "dataset.data_dir", str(Path(data_dir).resolve()))
    return experiment_from_dict(data)


def _label(values: dict[str, Any], seed: int) -> str:
    parts = [
        f"{k.rsplit('.', 1)[-1]}{v:g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}{v}"
        for k, v in values.items()
    ]
    return "-".join([*parts, f"seed{seed}"])


def train_run(directory: str) -> str:
    """Train (or resume) the run in `directory` from its `run.yaml`; its output to train.log."""
    from training.run import train  # the training stack: loaded in the worker only

    home = Path(directory)
    experiment = experiment_from_dict(yaml.safe_load((home / "run.yaml").read_text()))
    started, wall = time.perf_counter(), home / "wall.json"
    before = json.loads(wall.read_text())["seconds"] if wall.is_file() else 0.0
    resume = (home / "checkpoint").is_dir()
    with (
        open(home / "train.log", "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        final = train(experiment, home, resume=resume)
    seconds = before + time.perf_counter() - started
    wall.write_text(json.dumps({"seconds": seconds}))
    return f"{home}: {final.get('status')} after {seconds:.0f} s (nll {final.get('nll')})"


def run_all(replicate: Replicate, jobs: int = 1, groups: list[str] = ()) -> None:
    """Every run that is not done (of `groups`, or all), `jobs` at a time (each its own
    process when jobs > 1)."""
    todo = [r for r in replicate.runs if r.state() != "done" and r.group in (groups or [r.group])]
    print(f"{replicate.name}: {len(replicate.runs) - len(todo)} done, {len(todo)} to run")
    for run in todo:
        run.directory.mkdir(parents=True, exist_ok=True)
        (run.directory / "run.yaml").write_text(yaml.safe_dump(run.experiment.to_dict()))
    directories = [str(r.directory) for r in todo]
    if jobs == 1:
        for directory in directories:
            print(train_run(directory), flush=True)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for line in pool.map(train_run, directories):
            print(line, flush=True)


def write_figure(replicate: Replicate) -> str:
    """`<table>.html` (and a PNG when a browser engine is present); what was written."""
    if replicate.table == "figure2":
        figure = figure2_plot(finished_rows(replicate), replicate.groups)
    else:
        figure = figure1_plot([(r.group, r.seed, curve(r.directory)) for r in replicate.runs])
    page = replicate.home / f"{replicate.table}.html"
    figure.write_html(page, include_plotlyjs=True)
    pngs = write_pngs({replicate.table: figure}, replicate.home, replicate.name)
    return f"wrote {page}" + (f" and {pngs[0]}" if isinstance(pngs, list) else f" ({pngs})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.replicate", description=__doc__)
    parser.add_argument("file", type=Path, help="replicate file (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--storage", help="results root (default: the experiments' storage)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--group", action="append", default=[], help="only this group's runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="instead of the file's")
    parser.add_argument("--list", action="store_true", help="list the runs and their states")
    parser.add_argument("--tables", action="store_true", help="only write the tables")
    args = parser.parse_args(argv)
    try:
        if args.jobs < 1:
            raise ConfigError(f"--jobs: must be >= 1, got {args.jobs}")
        replicate = load_replicate(args.file, args.overrides, args.storage, args.seeds)
        if args.list:
            for run in replicate.runs:
                print(f"{run.state():12} {run.directory}")
            return 0
        unknown = sorted(set(args.group) - set(replicate.groups))
        if unknown:
            raise ConfigError(f"--group: no group {unknown[0]!r} in {args.file}")
        if not args.tables:
            run_all(replicate, args.jobs, args.group)
        print(write_tables(replicate))
        print(write_figure(replicate))
    except (ConfigError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
