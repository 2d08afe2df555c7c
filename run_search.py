"""InfoAE Search: one command line for the Information-Autoencoding family.

    python run_search.py                        # search configs/quick.yaml (embedded mog data)
    python run_search.py search EXPERIMENT.yaml [--set key=value ...] [--resume] [--address ADDR]
    python run_search.py train  EXPERIMENT.yaml [--set key=value ...] [--out DIR]
    python run_search.py report  RESULTS_DIR    # HTML dashboard: Pareto front of NLL vs I_q
    python run_search.py export  RESULTS_DIR [--trial ID]   # trials as re-trainable YAML
    python run_search.py explain NAME|JSON      # a preset or Lagrangian, in words

Every sub-command reads the same experiment file shape (DESIGN.md, "Experiment file").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_EXPERIMENT = ROOT / "configs" / "quick.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_search.py",
        description="Train and search the Information-Autoencoding family (α1, α2, λ).",
    )
    commands = parser.add_subparsers(dest="command")

    def with_experiment(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("experiment", type=Path, help="experiment file (YAML)")
        sub.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a dotted key, e.g. --set train.steps=200 (repeatable)",
        )
        return sub

    search = with_experiment("search", "run a Ray Tune + Optuna search over the multipliers")
    search.add_argument("--storage", help="results root (default: the file's `storage`)")
    search.add_argument("--resume", action="store_true", help="continue an interrupted search")
    search.add_argument("--address", help="join a running Ray cluster (default: RAY_ADDRESS)")
    search.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:  # the newcomer's demo
        args = build_parser().parse_args(["search", str(DEFAULT_EXPERIMENT)])
    if args.command == "search":
        from search.tune import main_search

        return main_search(args)
    if args.command == "train":
        from search.train import main_train

        return main_train(args)
    if args.command in ("report", "export"):
        return _analysis(args)
    if args.command == "explain":
        from objectives.__main__ import main as objectives_main

        return objectives_main(["explain", args.what, *args.params])
    raise AssertionError(args.command)


def _analysis(args: argparse.Namespace) -> int:
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
