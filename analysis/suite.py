"""Several searches as one experiment: a suite file, run with one command, and its tables.

    python run_search.py suite configs/paper-4.2-mnist-cpu.yaml [--set key=value] [--num-cpus 2]
    python run_search.py suite configs/search-methods-mog.yaml --storage results
    python run_search.py suite --tables results/search-methods-mog   # rebuild the tables only
    python run_search.py suite --tables results/paper-4.1-mog-cpu --table figure1   # one search

A suite file names experiment files (paths relative to the suite file) and what to compute:

    suite: paper-4.2-mnist-cpu        # results in <storage>/<suite>/
    experiments:                      # a file, or {file: F, set: {its own overrides}}
      - paper-4.2-mnist-beta-elbo.yaml
      - {file: paper-4.2-mnist-infovae.yaml, set: {search.num_samples: 9}}
    set: {model.hidden: 256}          # dotted overrides for every experiment (optional)
    vary:                             # optional: one search per combination, named
      search.sampler: [grid, tpe]     #   <experiment>-<value>-... (e.g. methods-grid-seed0)
      seed: [0, 1]
    table: figure2                    # figure1 | figure2 | methods | none
    dual: {slack: {"MMD(q(z)||p(z))": 0.001}, lr: 100}   # methods only, optional

Each search runs through `search.tune.run_search` as `run_search.py search` would run it
(a relative `dataset.data_dir` is read from the working directory, as `train` reads it);
then `<storage>/<suite>/` gets `suite.json` (which directory holds which search),
`compare.html` (every search overlaid: the Figure 1 and Figure 2 views among its figures)
and `tables.md` (see `analysis.tables`). With `dual`, the best-NLL trial of all searches is
trained again with λ learned by dual ascent (`objective.mode: lagrangian`, starting from the
file's λ, β and the other searched values kept), and both sit in one table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from analysis.report import write_comparison, write_report
from analysis.results import ResultsError, load_curves, load_many
from analysis.tables import figure1_table, figure2_table, markdown, methods_summary, methods_table
from experiment.config import ConfigError, Experiment, experiment_from_dict
from experiment.typed_yaml import apply_overrides, load_mapping, set_dotted

TABLES = ("figure1", "figure2", "methods", "none")


@dataclass(frozen=True)
class SuiteRun:
    experiment: Experiment
    values: Mapping[str, Any]  # the varied dotted keys of this search


@dataclass(frozen=True)
class Suite:
    name: str
    runs: tuple[SuiteRun, ...]
    table: str
    dual: Mapping[str, Any] | None
    storage: str


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> Suite:
    """Read a suite file; every experiment is validated (ConfigError names file and key)."""
    path = Path(path)
    data = load_mapping(path)
    unknown = sorted(set(data) - {"suite", "experiments", "set", "vary", "table", "dual"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (see analysis/suite.py)")
    name, files = data.get("suite"), data.get("experiments") or []
    if not isinstance(name, str) or not name or not isinstance(files, list) or not files:
        raise ConfigError(f"{path}: give `suite: NAME` and a list of `experiments`")
    table = data.get("table", "none")
    if table not in TABLES:
        raise ConfigError(f"{path}: table: {table!r} is not one of {', '.join(TABLES)}")
    common = [f"{k}={json.dumps(v)}" for k, v in (data.get("set") or {}).items()]
    vary = data.get("vary") or {}
    combinations = [dict(zip(vary, c, strict=True)) for c in itertools.product(*vary.values())]
    runs = []
    for entry in files:
        file, own = (entry, {}) if isinstance(entry, str) else (entry.get("file"), entry)
        if not isinstance(file, str) or set(own) - {"file", "set"}:
            raise ConfigError(f"{path}: an experiment is a file name or {{file: F, set: {{...}}}}")
        raw = load_mapping(path.parent / file)
        mine = [f"{k}={json.dumps(v)}" for k, v in (own.get("set") or {}).items()]
        for values in combinations:
            varied = [f"{k}={json.dumps(v)}" for k, v in values.items()]
            settings = [*common, *mine, *varied, *overrides]
            mapping = apply_overrides(raw, settings)
            suffix = "-".join(_tag(k, v) for k, v in values.items())
            if suffix:
                set_dotted(mapping, "name", f"{mapping.get('name', 'experiment')}-{suffix}")
            data_dir = (mapping.get("dataset") or {}).get("data_dir")
            if isinstance(data_dir, str) and "://" not in data_dir:  # Ray workers run in
                set_dotted(mapping, "dataset.data_dir", str(Path(data_dir).resolve()))  # other dirs
            try:
                experiment = experiment_from_dict(mapping)
            except ConfigError as error:
                raise ConfigError(f"{path.parent / file}: {error}") from None
            runs.append(SuiteRun(experiment, values))
    storage = runs[0].experiment.storage
    return Suite(name, tuple(runs), table, data.get("dual"), storage)


def _tag(key: str, value: Any) -> str:
    short = key.rsplit(".", 1)[-1]
    return f"{short}{value}" if isinstance(value, int | float) else str(value)


def run_suite(
    suite: Suite,
    storage: str | None = None,
    num_cpus: int | None = None,
    address: str | None = None,
) -> Path:
    """Run every search of the suite (Ray: `address`, else RAY_ADDRESS, else a local one of
    `num_cpus`), then write its outputs; the suite directory."""
    from search.tune import run_search  # Ray is started (and stopped) per search

    home = Path(storage or suite.storage) / suite.name
    home.mkdir(parents=True, exist_ok=True)
    recorded = []
    for run in suite.runs:
        plan, _ = run_search(
            run.experiment,
            storage_root=storage,
            address=address,
            num_cpus=num_cpus,
            after_trial=_dashboard,
        )
        if plan.trials_csv.is_file():
            _dashboard(plan)
        recorded.append({"directory": str(plan.experiment_path), "values": dict(run.values)})
        (home / "suite.json").write_text(json.dumps({"table": suite.table, "runs": recorded}))
    if suite.dual is not None:
        _train_dual(home, suite.dual)
    return write_outputs(home)


def _dashboard(plan: Any) -> None:
    """Each search's own report.html, rewritten after each of its trials."""
    write_report(plan.experiment_path, plan.local_dir / "report.html")


def write_outputs(home: Path, table: str | None = None) -> Path:
    """`compare.html` and `tables.md` of a suite directory (from its `suite.json`); a plain
    experiment directory is a suite of one (its own report.html is its dashboard)."""
    if (home / "suite.json").is_file():
        spec = json.loads((home / "suite.json").read_text())
    else:
        spec = {"table": "figure1", "runs": [{"directory": str(home), "values": {}}]}
    spec["table"] = table or spec["table"]
    directories = [r["directory"] for r in spec["runs"]]
    if len(directories) > 1:
        write_comparison(directories, home / "compare.html")
    results = load_many(directories)
    trials = pd.concat([r.trials for r in results], ignore_index=True)
    sections = []
    if spec["table"] == "figure1":
        table = figure1_table(trials, load_curves(*directories), results[0].mi_metric or "mi")
        sections.append(("Figure 1 runs", table))
    elif spec["table"] == "figure2":
        sections.append(("Figure 2: nll by β and λ (λ = 0: the β-ELBO)", figure2_table(trials)))
    elif spec["table"] == "methods":
        metrics, modes = results[0].objectives
        pairs = [(r["values"], t.trials) for r, t in zip(spec["runs"], results, strict=True)]
        table = methods_table(pairs, metrics, modes)
        sections.append(("Per search", table))
        sections.append(("Per method (mean, sample std over seeds)", methods_summary(table)))
        note = f"hypervolume of ({', '.join(metrics)}), reference {table.attrs['reference']}"
        sections.append((note, None))
        if (home / "dual.json").is_file():
            sections.append(("Dual ascent against the best fixed λ", _dual_table(home)))
    text = "\n\n".join(
        f"### {title}" + (f"\n\n{markdown(t)}" if t is not None else "") for title, t in sections
    )
    (home / "tables.md").write_text(text + "\n")
    print(text)
    return home


DUAL_COLUMNS = ("nll", "nll_train", "mi", "mi_upper", "rate", "distortion", "mmd_qz_pz")


def _train_dual(home: Path, dual: Mapping[str, Any]) -> None:
    """Train the best-NLL trial's β (and other searched values) with λ learned by dual
    ascent from the file's λ; write `dual.json` with both rows."""
    from training.run import train

    spec = json.loads((home / "suite.json").read_text())
    results = load_many([r["directory"] for r in spec["runs"]])
    best_nll, best = float("inf"), None
    for result in results:
        finished = result.finished
        if not finished.empty and finished["nll"].min() < best_nll:
            best_nll, best = finished["nll"].min(), (result, finished.loc[finished["nll"].idxmin()])
    if best is None:
        raise ResultsError(f"{home}: no finished trial to compare dual ascent with")
    result, row = best
    kept = {k: float(row[k]) for k in result.searched if not k.endswith("lambda")}
    experiment = result.experiment.with_values(
        {**kept, "objective.mode": "lagrangian", "objective.dual": dict(dual)}
    )
    final = train(experiment, home / "dual")
    fixed = {"run": f"fixed λ (search best, trial {row['trial_id']})"}
    fixed |= {k.rsplit(".", 1)[-1]: float(row[k]) for k in result.searched}
    fixed |= {m: float(row[m]) for m in DUAL_COLUMNS if m in row}
    learned = {"run": f"dual ascent ({json.dumps(dict(dual))})"}
    learned |= {k.rsplit(".", 1)[-1]: v for k, v in kept.items()}
    learned |= {"lambda": next((v for k, v in final.items() if k.startswith("lambda/")), None)}
    learned |= {m: final.get(m) for m in DUAL_COLUMNS}
    (home / "dual.json").write_text(json.dumps([fixed, learned], default=float))


def _dual_table(home: Path) -> pd.DataFrame:
    return pd.DataFrame(json.loads((home / "dual.json").read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_search.py suite", description=__doc__)
    parser.add_argument("suite", nargs="?", type=Path, help="suite file (YAML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--storage", help="results root (default: the experiments' storage)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    parser.add_argument("--address", help="join a running Ray cluster (default: RAY_ADDRESS)")
    parser.add_argument("--tables", type=Path, help="only the outputs of a suite directory")
    parser.add_argument("--table", choices=TABLES, help="with --tables: which table")
    args = parser.parse_args(argv)
    try:
        if args.tables is not None:
            write_outputs(args.tables, args.table)
        elif args.suite is not None:
            suite = load_suite(args.suite, args.overrides)
            print(f"suite: {run_suite(suite, args.storage, args.num_cpus, args.address)}")
        else:
            parser.error("give a suite file or --tables DIR")
    except (ConfigError, ResultsError, OSError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
