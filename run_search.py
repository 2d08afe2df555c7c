"""InfoAE Search: one command line for the Information-Autoencoding family.

    python run_search.py [--set key=value ...] [--storage DIR]   # search configs/quick.yaml
    python run_search.py search EXPERIMENT.yaml [--set key=value ...] [--resume] [--address ADDR]
    python run_search.py train  EXPERIMENT.yaml [--set key=value ...] [--out DIR]
    python run_search.py report  RESULTS_DIR [--out FILE] [--no-png]   # the HTML dashboard
    python run_search.py export  RESULTS_DIR [--pick min-nll|max-mi|knee|trial=ID]
                                 [--where "nll<=1.40"] [--all-pareto] [--format yaml|json]
                                 [--out FILE|DIR]       # trials as re-trainable experiment files
    python run_search.py compare RESULTS_DIR RESULTS_DIR ... [--out FILE]   # overlaid dashboard
    python run_search.py explain NAME|JSON      # a preset or Lagrangian, in words
    python run_search.py suite SUITE.yaml [--set key=value ...] | --tables DIR   # several
                                 searches as one experiment (analysis/suite.py: the paper's
                                 Figure 2, the search-methods comparison), with their tables

Every sub-command reads the same experiment file shape (experiment/config.py). The layers
below point one way (docs/ARCHITECTURE.md): objectives <- experiment <- training <- search <-
analysis <- this file, which wires them together (and is the only one that sees them all).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search.plan import SearchPlan

ROOT = Path(__file__).resolve().parent
DEMO = Path("configs") / "quick.yaml"


def shipped(path: Path) -> Path:
    """`path` when it exists; else `configs/NAME.yaml` (or `NAME.yaml`) as shipped: beside
    this file in a clone, or in the package `infoae_configs` an install carries (pyproject)."""
    if path.exists() or path.parent not in (DEMO.parent, Path(".")):
        return path
    return _installed(path.name) or path


def _installed(name: str) -> Path | None:
    if (ROOT / DEMO.parent / name).is_file():
        return ROOT / DEMO.parent / name
    try:
        from importlib.resources import files

        copy = Path(str(files("infoae_configs") / name))
    except ModuleNotFoundError:  # neither a clone nor an install
        return None
    return copy if copy.is_file() else None


DEFAULT_EXPERIMENT = _installed(DEMO.name) or ROOT / DEMO  # the clone's, else the installed
COMMANDS = ("search", "train", "report", "export", "compare", "explain", "suite")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_search.py",
        description="Train and search the Information-Autoencoding family (α1, α2, λ). "
        f"Without a sub-command: search {DEMO} (the demo).",
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

    _analysis_commands(commands)
    commands.add_parser(  # parsed by analysis.suite itself (see main)
        "suite", help="several searches as one experiment, and their tables (analysis/suite.py)"
    )

    explain = commands.add_parser("explain", help="explain a preset or a Lagrangian in words")
    explain.add_argument("what", help="a preset name (e.g. beta-vae) or a Lagrangian as JSON")
    explain.add_argument("params", nargs=argparse.REMAINDER, help="preset parameters: --beta 4")
    return parser


def _analysis_commands(commands: argparse._SubParsersAction) -> None:
    where = "experiment directory <storage>/<name>, or its storage URI"
    report = commands.add_parser("report", help="write the HTML dashboard of a search")
    report.add_argument("directory", help=where)
    report.add_argument("--out", type=Path, help="HTML path (default: <directory>/report.html)")
    report.add_argument("--no-png", action="store_true", help="skip the PNG of each figure")

    export = commands.add_parser("export", help="write trials as experiment files to re-train")
    export.add_argument("directory", help=where)
    export.add_argument(
        "--pick",
        action="append",
        default=[],
        metavar="min-nll|max-mi|knee|trial=ID",
        help="which trial (repeatable; default: every Pareto trial)",
    )
    export.add_argument(
        "--where", action="append", default=[], metavar="COND", help='filter first: "nll<=1.40"'
    )
    export.add_argument("--all-pareto", action="store_true", help="one file per Pareto trial")
    export.add_argument("--format", default="yaml", help="yaml (provenance as comments) or json")
    export.add_argument(
        "--out", type=Path, help="a file (one trial) or a folder (default: <directory>/exports)"
    )

    compare = commands.add_parser("compare", help="overlay several searches in one dashboard")
    compare.add_argument("directories", nargs="+", help="experiment directories or URIs")
    compare.add_argument("--out", type=Path, default=Path("compare.html"), help="HTML path")
    compare.add_argument("--png", action="store_true", help="also a PNG of each figure")


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
    if argv[:1] == ["suite"]:  # its own options: analysis.suite parses them
        from analysis.suite import main as suite_main

        return suite_main(argv[1:])
    if argv[:1] and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        hint = f" (search a file: search {argv[0]})" if argv[0].endswith((".yaml", ".yml")) else ""
        print(
            f"error: unknown command {argv[0]!r}; one of {', '.join(COMMANDS)}{hint}",
            file=sys.stderr,
        )
        return 2
    if not any(arg in COMMANDS for arg in argv[:1]) and argv[:1] not in (["-h"], ["--help"]):
        argv = ["search", str(DEFAULT_EXPERIMENT), *argv]  # the newcomer's demo, with options
    args = build_parser().parse_args(argv)
    if args.command in ("search", "train"):
        args.experiment = shipped(args.experiment)  # an install's configs/NAME.yaml
    if args.command == "search":
        return main_search(args)
    if args.command == "train":
        return main_train(args)
    if args.command in ("report", "export", "compare"):
        return main_analysis(args)
    from objectives.__main__ import main as objectives_main

    return objectives_main(["explain", args.what, *args.params])


def main_search(args: argparse.Namespace) -> int:
    """`search`: 0 when trials finished ok, 1 when none did, 2 on a bad input or when a full
    or read-only disk stopped it, 128 + the signal's number when SIGINT or SIGTERM stopped it
    (in each of these two cases `--resume` completes it)."""
    from analysis.summary import read_summary
    from experiment.config import ConfigError, load_experiment
    from experiment.files import fault_line, storage_fault
    from experiment.status import OK
    from search.interrupt import Interrupted
    from search.tune import run_search

    resume = ["run_search.py", "search", str(args.experiment)]
    resume += [*(["--storage", args.storage] if args.storage else []), "--resume"]
    try:
        experiment = load_experiment(args.experiment, args.overrides)
        plan, study = run_search(
            experiment,
            storage_root=args.storage,
            resume=args.resume,
            address=args.address,
            num_cpus=args.num_cpus,
            after_trial=write_dashboard,
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # Tune saved its state; nothing failed, nothing pruned
        done, total = stop.finished, stop.plan.num_samples
        print(f"interrupted: {done} of {total} finished, `{shlex.join(resume)}` continues")
        return stop.exit_code
    except KeyboardInterrupt:  # before Tune ran, or a second signal: every checkpoint stays
        print(f"interrupted: `{shlex.join(resume)}` continues (when the search had begun)")
        return 130
    except Exception as error:  # a full or read-only disk, however Ray wrapped it: one line
        fault = storage_fault(error)
        if fault is None and not isinstance(error, OSError):
            raise
        hint = f"; the search stopped: fix that, then `{shlex.join(resume)}`" if fault else ""
        print(f"error: {fault_line(fault or error)}{hint}", file=sys.stderr)
        return 2
    dashboard = ""
    if plan.trials_csv.is_file():
        try:  # the search is done and saved: a failure here never loses a result
            dashboard = str(write_dashboard(plan, png=True))
        except Exception as error:
            print(f"note: no dashboard written ({type(error).__name__}: {error})")
    summary = read_summary(plan, study.refused(), dashboard)
    after, ran = study.asked_after_results()
    lines = summary.lines()
    lines.insert(1, f"the sampler proposed {after} of {ran} trials after it had seen a result")
    for line in lines:
        print(line)
    return 0 if summary.counts[OK] else 1


def write_dashboard(plan: SearchPlan, png: bool = False) -> Path:
    """`report.html` of a search, rewritten after each finished trial (reload it meanwhile);
    with a URI storage it is written beside the driver's files and copied up. With `png`
    (the last write), a PNG of each figure too when a browser engine is present."""
    from analysis.report import write_report

    out = write_report(plan.experiment_path, plan.local_dir / "report.html", png=png).path
    plan.sync("report.html")
    return out


def main_train(args: argparse.Namespace) -> int:
    """`train`: exit 0 when trained, 1 when it diverged, 2 on a bad input."""
    from experiment.config import ConfigError, load_experiment
    from experiment.files import fault_line
    from experiment.status import DIVERGED
    from training.data import DataError
    from training.run import train

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
    except OSError as error:  # --out unwritable, a full disk
        print(f"error: {fault_line(error)}", file=sys.stderr)
        return 2
    if final.get("status") == DIVERGED:
        print(
            f"error: training diverged at step {final['diverged_step']} "
            f"(non-finite {final['diverged_term']})",
            file=sys.stderr,
        )
        return 1
    return 0


def main_analysis(args: argparse.Namespace) -> int:
    """`report`, `export`, `compare`: exit 0, or 2 with one `error:` line on a bad input."""
    from analysis.export import export
    from analysis.report import write_comparison, write_report
    from analysis.results import ResultsError
    from experiment.config import ConfigError
    from experiment.files import fault_line

    try:
        if args.command in ("report", "compare"):
            if args.command == "report":
                written = write_report(args.directory, args.out, png=not args.no_png)
            else:
                written = write_comparison(args.directories, args.out, png=args.png)
            print(f"dashboard: {written.path}")
            images = written.images or []
            for line in [f"figure: {p}" for p in images] if isinstance(images, list) else [images]:
                print(line)
        else:
            paths = export(
                args.directory, args.pick, args.where, args.all_pareto, args.format, args.out
            )
            for path in paths:
                print(f"exported: {path}   (re-train: python run_search.py train {path})")
    except (ResultsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # --out unwritable or a folder, a full disk
        print(f"error: {fault_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
