"""InfoAE Search: one command line for the Information-Autoencoding family.

    python run_search.py [--set key=value ...] [--storage DIR]   # search configs/quick.yaml
    python run_search.py search EXPERIMENT.yaml [--set key=value ...] [--resume] [--address ADDR]
    python run_search.py train  EXPERIMENT.yaml [--set key=value ...] [--out DIR]
    python run_search.py report  RESULTS_DIR    # HTML dashboard: Pareto front of NLL vs I_q
    python run_search.py export  RESULTS_DIR [--trial ID]   # trials as re-trainable YAML
    python run_search.py explain NAME|JSON      # a preset or Lagrangian, in words

Every sub-command reads the same experiment file shape (DESIGN.md, "Experiment file"). The
layers below point one way: objectives <- search.config <- search.training <- search <-
analysis <- this file, which wires them together (and is the only one that sees them all).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = ROOT / "configs" / "quick.yaml"
COMMANDS = ("search", "train", "report", "export", "explain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_search.py",
        description="Train and search the Information-Autoencoding family (α1, α2, λ). "
        f"Without a sub-command: search {DEFAULT_EXPERIMENT.relative_to(ROOT)} (the demo).",
    )
    commands = parser.add_subparsers(dest="command")

    def with_experiment(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("experiment", type=Path, help="experiment file (YAML)")
        _overrides(sub)
        return sub

    search = with_experiment("search", "run a Ray Tune + Optuna search over the multipliers")
    _search_options(search)

    train = with_experiment("train", "train one config, print one JSON line per evaluation")
    train.add_argument(
        "--out", type=Path, help="output directory (default: <storage>/<name>/train)"
    )
    train.add_argument("--resume", action="store_true", help="resume from the out dir's checkpoint")

    report = commands.add_parser("report", help="write the HTML dashboard of a search")
    report.add_argument("directory", type=Path, help="experiment directory <storage>/<name>")
    report.add_argument("--out", type=Path, help="HTML path (default: <directory>/report.html)")

    export = commands.add_parser("export", help="write trials as experiment files to re-train")
    export.add_argument("directory", type=Path, help="experiment directory <storage>/<name>")
    export.add_argument("--trial", action="append", help="trial id (default: the Pareto set)")
    export.add_argument("--out", type=Path, help="folder (default: <directory>/exports)")

    explain = commands.add_parser("explain", help="explain a preset or a Lagrangian in words")
    explain.add_argument("what", help="a preset name (e.g. beta-vae) or a Lagrangian as JSON")
    explain.add_argument("params", nargs=argparse.REMAINDER, help="preset parameters: --beta 4")
    return parser


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted key, e.g. --set train.steps=200 (repeatable)",
    )


def _search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="results root (default: the file's `storage`)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted search")
    parser.add_argument("--address", help="join a running Ray cluster (default: RAY_ADDRESS)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(arg in COMMANDS for arg in argv[:1]) and argv[:1] not in (["-h"], ["--help"]):
        argv = ["search", str(DEFAULT_EXPERIMENT), *argv]  # the newcomer's demo, with options
    args = build_parser().parse_args(argv)
    if args.command == "search":
        return main_search(args)
    if args.command == "train":
        return main_train(args)
    if args.command in ("report", "export"):
        return main_analysis(args)
    from objectives.__main__ import main as objectives_main

    return objectives_main(["explain", args.what, *args.params])


def main_search(args: argparse.Namespace) -> int:
    """`search`: 0 when trials finished ok, 1 when none did, 2 on a bad input."""
    from analysis.report import write_report
    from analysis.summary import read_summary
    from search.config import ConfigError, load_experiment
    from search.tune import run_search

    try:
        experiment = load_experiment(args.experiment, args.overrides)
        plan, study = run_search(
            experiment,
            storage_root=args.storage,
            resume=args.resume,
            address=args.address,
            num_cpus=args.num_cpus,
            explicit_metrics=metrics_given(args.experiment, args.overrides),
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    dashboard = ""
    if not plan.is_remote and plan.trials_csv.is_file():
        try:  # the search is done and saved: a failure here never loses a result
            dashboard = str(write_report(plan.experiment_path))
        except Exception as error:
            print(f"note: no dashboard written ({type(error).__name__}: {error})")
    summary = read_summary(plan, study.refused(), dashboard)
    for line in summary.lines():
        print(line)
    return 0 if summary.counts["ok"] else 1


def metrics_given(path: Path, overrides: Iterable[str]) -> bool:
    """Whether the experiment file (or an override) sets `search.metrics` itself."""
    if any(o.partition("=")[0].strip().startswith("search.metrics") for o in overrides):
        return True
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    search = data.get("search") if isinstance(data, dict) else None
    return isinstance(search, dict) and "metrics" in search


def main_train(args: argparse.Namespace) -> int:
    """`train`: exit 0 when trained, 1 when it diverged, 2 on a bad input."""
    from search.config import ConfigError, load_experiment
    from search.training.data import DataError
    from search.training.run import train

    try:
        experiment = load_experiment(args.experiment, args.overrides)
        out = args.out
        if out is None:
            if "://" in experiment.storage:
                raise ConfigError(
                    f"storage: {experiment.storage!r} is remote; train needs --out DIR"
                )
            out = Path(experiment.storage) / experiment.name / "train"
        final = train(experiment, out, resume=args.resume)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if final.get("status") == "diverged":
        print(
            f"error: training diverged at step {final['diverged_step']} "
            f"(non-finite {final['diverged_term']})",
            file=sys.stderr,
        )
        return 1
    return 0


def main_analysis(args: argparse.Namespace) -> int:
    from analysis.export import export_trials
    from analysis.report import write_report
    from analysis.results import ResultsError
    from search.config import ConfigError

    try:
        if args.command == "report":
            print(f"dashboard: {write_report(args.directory, args.out)}")
        else:
            for path in export_trials(args.directory, args.trial, args.out):
                print(f"exported: {path}   (re-train: python run_search.py train {path})")
    except (ResultsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
