"""What one Tune trial does, without Ray: train one point, or a population of points.

`search.tune.run_trial` adapts Tune to this module through a `TrialIO` (report a result with a
checkpoint folder, open a checkpoint as a local folder, the checkpoints to resume from), so
the trial's logic runs and is tested without Ray.

A point's trial reports its metrics every evaluation with a checkpoint; the last checkpoint
also holds `final.yaml`. A population trial (config `{"members": [point, ...]}`) reports
`{"members": {"0": metrics of member 0, ...}, ...}` (read by
`search.members.decode`). Its members train together as one `Trainer` per
group of members that share terms, data, network and training settings (almost always one
group; groups run one after another). A point the compiler refuses never trains: it is reported
`refused`. Either kind resumes from the newest readable checkpoint; one cut short is skipped.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiment.config import METRICS, ConfigError, Experiment
from experiment.typed_yaml import plain
from search import checkpoints
from search.members import BEST, MEMBERS, SLOTS, population_result, rank_of
from search.rolling import train_rolling
from training.members import group_key
from training.trainer import Trainer

RESUME_ERRORS = checkpoints.RESUME_ERRORS
GROUP_FINAL = "group_final.yaml"  # in a finished group's folder: its members' final metrics


@dataclass
class TrialIO:
    """How a trial talks to its scheduler (Tune in `search.tune`, plain callables in tests)."""

    report: Callable[[dict[str, Any], Path | None], None]  # metrics, checkpoint folder or None
    open_checkpoint: Callable[[Path], AbstractContextManager[Any]]  # -> a local folder
    paths: Sequence[Path] = ()  # checkpoints to resume from, newest first
    threads: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. placement, in every report
    study: Any = None  # a rolling trial's `search.rolling.StudyLink`
    trial_id: str = ""  # the scheduler's name of the trial (members are `trial_id#n`)


def run(config: Mapping[str, Any], experiment: Experiment, io: TrialIO) -> None:
    """Train `config` (dotted key -> value, or a population's `members`) of `experiment`."""
    if SLOTS in config:
        final = _final(io)
        if final is not None:  # finished before the driver stopped: report, do not retrain
            io.report({**final, "reported_again": True}, None)
        else:
            train_rolling(config, experiment, io)
    elif MEMBERS in config:
        train_population([dict(p) for p in config[MEMBERS]], experiment, io)
    else:
        train_point(dict(config), experiment, io)


def _final(io: TrialIO) -> dict[str, Any] | None:
    """The final metrics of a trial that finished before the driver stopped, if any."""
    if not io.paths:
        return None
    with io.open_checkpoint(io.paths[0]) as directory:
        return checkpoints.read_final(Path(directory))


def _refused(reason: str) -> dict[str, Any]:
    return {**dict.fromkeys(METRICS, math.nan), "status": "refused", "reason": reason, "step": 0}


# --------------------------------------------------------------------------- one point


def train_point(config: Mapping[str, Any], experiment: Experiment, io: TrialIO) -> None:
    """One point: a `Trainer` of one member, resumed from the newest readable checkpoint."""
    try:  # the objective is compiled here, once, and travels with the experiment
        point = experiment.with_values({k: float(v) for k, v in config.items()})
    except ConfigError as reason:  # never trained: told to Optuna as failed
        io.report({**_refused(str(reason)), **io.extra}, None)
        return
    final = _final(io)
    if final is not None:  # finished before the driver stopped: report, do not retrain
        io.report({**final, "reported_again": True}, None)
        return
    trainer = Trainer(point, threads=io.threads)
    for path in io.paths:  # newest first; one cut short by a SIGKILL is skipped
        try:
            with io.open_checkpoint(path) as directory:
                trainer.load_checkpoint(Path(directory))
            break
        except RESUME_ERRORS:
            trainer = Trainer(point, threads=io.threads)
    restored = {"restored_from_step": trainer.members[0].step}
    for (metrics,) in trainer.run():  # a point is a population of one
        metrics = {**metrics, **restored, **io.extra}
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(Path(directory))
            if metrics.get("done"):
                checkpoints.write_final(Path(directory), metrics)
            io.report(metrics, Path(directory))


# --------------------------------------------------------------------------- a population


def train_population(points: list[dict[str, Any]], experiment: Experiment, io: TrialIO) -> None:
    """K points trained together; each member's metrics reported in `members`."""
    final = _final(io)
    if final is not None:
        io.report({**final, "reported_again": True}, None)
        return
    members: list[dict[str, Any]] = [{} for _ in points]  # each member's latest metrics
    experiments: dict[int, Experiment] = {}
    for k, point in enumerate(points):
        try:
            experiments[k] = experiment.with_values({key: float(v) for key, v in point.items()})
        except ConfigError as reason:  # the searcher checks points first: a safety net
            members[k] = _refused(str(reason))
    groups = _groups(experiments)
    populations, finals = _restore(groups, experiments, io)
    restored = {  # each member's step when this run began
        k: populations[g].members[i].step
        for g, group in enumerate(groups)
        for i, k in enumerate(group)
    }
    for g, group in enumerate(groups):
        for k in group:
            members[k] = {"status": "running", "step": 0}
        if g in finals:
            _place(members, group, finals[g], restored)
            continue
        for metrics in populations[g].run():
            _place(members, group, metrics, restored)
            done = all(m.get("done") or m.get("status") == "refused" for m in members)
            if metrics[0].get("done"):
                finals[g] = metrics
            report = _population_result(members, done, io, points, experiment)
            with tempfile.TemporaryDirectory() as directory:
                _save(Path(directory), populations, finals)
                if done:
                    checkpoints.write_final(Path(directory), report)
                io.report(report, Path(directory))
    if not groups:  # every point refused: nothing to train, one report says so
        io.report(_population_result(members, True, io, points, experiment), None)


def _groups(experiments: Mapping[int, Experiment]) -> list[list[int]]:
    """Members in order, grouped as one `Trainer` needs (`training.members.SHARED`): data,
    network and training settings (a space over `train.lr` makes groups of one)."""
    groups: dict[str, list[int]] = {}
    for k, e in experiments.items():
        key = group_key(e)
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def _place(
    members: list[dict[str, Any]],
    group: Sequence[int],
    metrics: Sequence[Mapping[str, Any]],
    restored: Mapping[int, int],
) -> None:
    for k, values in zip(group, metrics, strict=True):
        members[k] = {**values, "restored_from_step": restored[k]}


def _population_result(
    members: list[dict[str, Any]],
    done: bool,
    io: TrialIO,
    points: Sequence[Mapping[str, Any]],
    experiment: Experiment,
) -> dict[str, Any]:
    """Tune's result of a population trial: encoded by `search.members`, which decodes it;
    the best member's point as the trial's `best_config`."""
    result = population_result(dict(enumerate(members)), done, io.extra, rank_of(experiment))
    if BEST[0] in result:
        result[BEST[1]] = dict(points[result[BEST[0]]])
    return result


def _save(directory: Path, populations: Sequence[Trainer], finals: Mapping[int, Any]) -> None:
    for g, population in enumerate(populations):
        folder = directory / f"group_{g}"
        population.save_checkpoint(folder)
        if g in finals:
            (folder / GROUP_FINAL).write_text(yaml.safe_dump(plain(finals[g])))


def _restore(
    groups: list[list[int]], experiments: Mapping[int, Experiment], io: TrialIO
) -> tuple[list[Trainer], dict[int, list[dict[str, Any]]]]:
    """Each group's `Trainer`, from the newest readable checkpoint; finished groups' finals."""

    def fresh() -> list[Trainer]:
        return [Trainer([experiments[k] for k in g], threads=io.threads) for g in groups]

    populations = fresh()
    for path in io.paths:
        try:
            finals = {}
            with io.open_checkpoint(path) as directory:
                for g, population in enumerate(populations):
                    folder = Path(directory) / f"group_{g}"
                    if folder.is_dir():
                        population.load_checkpoint(folder)
                        if (folder / GROUP_FINAL).is_file():
                            finals[g] = yaml.safe_load((folder / GROUP_FINAL).read_text())
            return populations, finals
        except RESUME_ERRORS:
            populations = fresh()
    return populations, {}
