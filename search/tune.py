"""The search: Ray Tune runs trials of `search.train.Trainer`, Optuna proposes (α1, α2, λ).

The only module that imports ray (DESIGN.md). One experiment file scales from a laptop (a
local Ray with `--num-cpus`) to a cluster (`--address` or RAY_ADDRESS; `storage` on a shared
filesystem or a bucket URI).

- Search: `OptunaSearch` behind a `ConcurrencyLimiter`; multi-objective by default
  (`search.metrics` [nll, mi], modes [min, max]) with TPE (multivariate, constant liar),
  NSGA-II, random or grid; single-objective with ASHA early stopping (`search.scheduler: asha`).
  The sampler seed is `search.seed`, else the experiment's `seed`.
- Which MI: on image data the aggregate-posterior `mi` saturates at log N, so there the default
  MI objective is `rate` (an upper bound on I_q); on mog it is `mi`. `search.metrics` given in
  the file wins. The bound used is printed and written to every row of `trials.csv`.
- Points: `search.spaces` validates the space and compiles a grid over it before Ray starts;
  a sampled point the compiler refuses is told to Optuna as failed and never trained.
- Failures: a trial that raises is retried `search.max_failures` times; a diverged trial
  (non-finite loss: status "diverged", nll NaN) is recorded and told to Optuna as failed, and
  the search goes on. `--resume` restores the Tune experiment and the searcher.
- Resources: `resources.cpu` / `resources.gpu` per trial (fractions pack trials on a GPU); a
  trial uses ceil(cpu) torch threads. When gpu > 0 is asked of a cluster with no GPU, the
  search says so and runs the trials on CPU (the same file works on a laptop).
- Results, in `<storage>/<name>/`: `experiment.yaml` (the experiment with its resolved
  metrics), `trials.csv` (one row per trial, rewritten as trials finish), `optuna.db` (the
  Optuna study, SQLite: `optuna-dashboard sqlite:///<path>`), and Tune's own files;
  `search.results` reads and writes them and formats the lines the search prints.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from analysis.report import write_report
from search.config import METRICS, ConfigError, Experiment, load_experiment
from search.data import DataError, load_dataset
from search.results import (
    FIELDS_AFTER_METRICS,
    IMAGE_DATASETS,
    Summary,
    csv_fields,
    format_line,
    read_rows,
    read_summary,
    write_rows,
)
from search.spaces import Space, check_compiles, describe, enqueue_presets, parse_space, refusal

DEFAULT_METRICS = ("nll", "mi")
STUDY_NAME = "search"
FINAL_FILE = "final.yaml"  # beside a trial's last checkpoint: its final metrics


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SearchPlan:
    """Everything decided before Ray starts; `experiment` carries the resolved metrics."""

    experiment: Experiment
    space: Space
    storage: str  # results root: an absolute path, or a URI (s3://, gs://, file://)
    name: str  # the experiment directory's name under `storage`
    local_dir: Path  # where trials.csv, experiment.yaml and optuna.db are written
    mi_bound: str  # "mi", "rate" or "" (no MI objective), and why, for people
    num_samples: int
    points: tuple[Mapping[str, float], ...]  # enqueued starting points

    @property
    def experiment_path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def is_remote(self) -> bool:
        return "://" in self.storage

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.experiment.search.metrics

    @property
    def modes(self) -> tuple[str, ...]:
        return self.experiment.search.modes

    @property
    def mi_metric(self) -> str:
        return next((m for m in self.metrics if m in ("mi", "rate")), "")

    @property
    def study_url(self) -> str:
        return f"sqlite:///{(self.local_dir / 'optuna.db').resolve()}"

    @property
    def trials_csv(self) -> Path:
        return self.local_dir / "trials.csv"


def resolve_metrics(experiment: Experiment, explicit: bool) -> tuple[Experiment, str]:
    """Swap the default `mi` for `rate` on image data unless the file chose; say which bound."""
    search = experiment.search
    if (
        not explicit
        and search.metrics == DEFAULT_METRICS
        and experiment.dataset.name in IMAGE_DATASETS
    ):
        search = replace(search, metrics=("nll", "rate"))
        experiment = replace(experiment, search=search)
    if "rate" in search.metrics:
        bound = "rate: E KL(q(z|x)||p(z)), an upper bound on I_q(x;z)"
        if experiment.dataset.name in IMAGE_DATASETS:
            bound += " (on image data the aggregate-posterior mi saturates at log N)"
    elif "mi" in search.metrics:
        bound = "mi: I_q(x;z) with the aggregate posterior over the eval set, capped at log N"
    else:
        bound = ""
    return experiment, bound


def plan_search(
    experiment: Experiment,
    *,
    storage: str | None = None,
    resume: bool = False,
    explicit_metrics: bool = False,
) -> SearchPlan:
    """Validate everything a search needs without Ray: space, compiler, data, storage."""
    experiment, bound = resolve_metrics(experiment, explicit_metrics)
    space = parse_space(experiment)
    check_compiles(experiment, space)
    points = tuple(enqueue_presets(experiment, space))
    _check_data(experiment)
    root = storage or experiment.storage
    if "://" not in root:
        root = str(Path(root).expanduser().resolve())
    name = experiment.name if resume else _fresh_name(root, experiment.name)
    if name != experiment.name:
        experiment = replace(experiment, name=name)
    num_samples = experiment.search.num_samples
    if experiment.search.sampler == "grid":
        num_samples = _grid_size(space, num_samples)
    if "://" in root:
        local_dir = Path.home() / ".cache" / "infoae-search" / name
    else:
        local_dir = Path(root) / name
    return SearchPlan(experiment, space, root, name, local_dir, bound, num_samples, points)


def _check_data(experiment: Experiment) -> None:
    """Fail before Ray when the data set cannot be loaded on this (the driver's) machine."""
    d = experiment.dataset
    if d.name == "mog":
        return
    data_dir = str(Path(d.data_dir).expanduser()) if d.data_dir else None
    try:
        load_dataset(
            d.name, data_dir, seed=experiment.seed, train_size=1, test_size=1, download=d.download
        )
    except (DataError, ValueError, OSError) as error:
        raise ConfigError(f"dataset.data_dir: {error}") from None


def _fresh_name(root: str, name: str) -> str:
    """`name`, or `name-2`, `name-3`... when a search already lives there (see --resume)."""
    candidate, index = name, 1
    while _has_search(f"{root.rstrip('/')}/{candidate}"):
        index += 1
        candidate = f"{name}-{index}"
    return candidate


def _has_search(path: str) -> bool:
    if "://" not in path:
        ours = ("trials.csv", "optuna.db", "experiment.yaml")
        return any((Path(path) / f).exists() for f in ours) or tune.Tuner.can_restore(path)
    return tune.Tuner.can_restore(path)


def _grid_size(space: Space, num_samples: int) -> int:
    per_param = max(2, round(num_samples ** (1 / len(space.params))))
    return per_param ** len(space.params)


# --------------------------------------------------------------------------- Optuna side


def make_sampler(plan: SearchPlan) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `search.sampler` names, seeded."""
    search = plan.experiment.search
    seed = search.seed if search.seed is not None else plan.experiment.seed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if search.sampler == "tpe":
            startup = max(2, min(10, plan.num_samples // 3))
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup
            )
        if search.sampler == "nsga2":
            population = max(4, min(50, plan.num_samples // 3))
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
        if search.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        per_param = round(plan.num_samples ** (1 / len(plan.space.params)))
        grid = {p.key: p.grid(per_param) for p in plan.space.params}
        return optuna.samplers.GridSampler(grid, seed=seed)


def distributions(space: Space) -> dict[str, optuna.distributions.FloatDistribution]:
    return {
        p.key: optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        for p in space.params
    }


class FamilySearch(OptunaSearch):
    """`OptunaSearch` that never runs a point the compiler refuses and knows our statuses.

    A refused point is told to Optuna as failed and another is asked for; a trial whose last
    result has status "diverged" or "refused" (nll NaN) is told as failed, not as NaN values.
    Each Optuna trial carries the Tune trial id and the status as user attributes.
    """

    max_refusals = 50

    def __init__(self, *args: Any, experiment: Experiment, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._experiment = experiment

    def suggest(self, trial_id: str) -> dict | None:
        for _ in range(self.max_refusals):
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            ot_trial.set_user_attr("tune_trial_id", trial_id)
            reason = refusal(self._experiment, config)
            if reason is None:
                return config
            ot_trial.set_user_attr("status", "refused")
            ot_trial.set_user_attr("reason", reason)
            self._tell(ot_trial, None, optuna.trial.TrialState.FAIL)
            del self._ot_trials[trial_id]
        raise RuntimeError(f"the compiler refused {self.max_refusals} points in a row: {reason}")

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if trial_id in self._completed_trials or ot_trial is None:
            return
        self._completed_trials.add(trial_id)
        status = "error" if error else (result or {}).get("status", "stopped")
        try:
            ot_trial.set_user_attr("status", "stopped" if status == "running" else status)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # told before the driver stopped; a resumed run reports it again
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        usable = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        if status in ("ok", "running", "stopped") and usable:
            value = values if isinstance(self.metric, list) else values[0]
            self._tell(ot_trial, value, optuna.trial.TrialState.COMPLETE)
        else:
            self._tell(ot_trial, None, optuna.trial.TrialState.FAIL)

    def _tell(self, ot_trial: Any, value: Any, state: optuna.trial.TrialState) -> None:
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except RuntimeError as error:  # GridSampler calls Study.stop once the grid is done,
            if "Study.stop" not in str(error):  # which only an optimize loop allows; the
                raise  # trial is told all the same (optuna's tell stores it in a `finally`)


def fail_orphans(plan: SearchPlan) -> int:
    """Mark Optuna trials still RUNNING after the search (asked, never run) as failed."""
    study = optuna.load_study(study_name=STUDY_NAME, storage=plan.study_url)
    orphans = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for frozen in orphans:
        optuna.trial.Trial(study, frozen._trial_id).set_user_attr("status", "orphaned")
        study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
    return len(orphans)


# --------------------------------------------------------------------------- the trainable


def run_trial(config: dict[str, Any], experiment: Experiment) -> None:
    """One Tune trial: train the experiment at `config` (dotted key -> value), reporting
    every evaluation with a checkpoint; resume from the last checkpoint when Tune restores."""
    from search.train import Trainer  # torch and the model live in the worker only

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint

    placement = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
    }
    point = {key: float(value) for key, value in config.items()}
    reason = refusal(experiment, point)
    if reason is not None:  # never trained: told to Optuna as failed
        nan = dict.fromkeys(METRICS, math.nan)
        tune.report({**nan, "status": "refused", "reason": reason, "step": 0, **placement})
        return
    checkpoints = restore_candidates(tune.get_checkpoint())
    for checkpoint in checkpoints:
        with checkpoint.as_directory() as directory:
            final = Path(directory) / FINAL_FILE
            if final.is_file():  # finished before the driver stopped: report, do not retrain
                metrics = yaml.safe_load(final.read_text())
                tune.report({**metrics, "restored_from_step": metrics["step"], **placement})
                return
        break  # only the newest checkpoint can hold the final metrics
    threads = max(1, math.ceil(experiment.resources.cpu))  # the CPUs Ray granted the trial
    trainer = Trainer(experiment.with_values(point), threads=threads)
    restored = {"restored_from_step": 0}
    for checkpoint in checkpoints:  # newest first; one cut short by a SIGKILL is skipped
        try:
            with checkpoint.as_directory() as directory:
                trainer.load_checkpoint(Path(directory))
        except (OSError, RuntimeError, KeyError, EOFError):
            trainer = Trainer(experiment.with_values(point), threads=threads)
            continue
        restored["restored_from_step"] = trainer.step
        break
    for metrics in trainer.run():
        metrics = {**metrics, **restored, **placement}
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(Path(directory))
            if metrics.get("done"):
                (Path(directory) / FINAL_FILE).write_text(yaml.safe_dump(_plain(metrics)))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def restore_candidates(checkpoint: tune.Checkpoint | None) -> list[tune.Checkpoint]:
    """The checkpoints to resume a trial from, newest first.

    Tune restores a trial from the checkpoint its last experiment snapshot names, and that
    snapshot can lag several checkpoints behind the trial (it is written every few seconds).
    On storage this process can read, every checkpoint of the trial is kept until the search
    ends (`prune_checkpoints`), so the newest one on disk is used: finished work is not redone.
    """
    if checkpoint is None:
        return []
    path = Path(checkpoint.path)
    if not path.is_dir():  # remote storage: only the one Tune names
        return [checkpoint]
    siblings = sorted(path.parent.glob("checkpoint_*"), reverse=True)
    return [tune.Checkpoint.from_directory(str(p)) for p in siblings] or [checkpoint]


def prune_checkpoints(plan: SearchPlan) -> int:
    """After the search: keep only each trial's newest checkpoint. Returns how many went.

    During the search every checkpoint is kept: Tune deletes old ones before it rewrites the
    experiment snapshot, so after a SIGKILL in between the snapshot could name a deleted
    checkpoint and `--resume` could not restore that trial.
    """
    if plan.is_remote:
        return 0
    removed = 0
    for trial in Path(plan.experiment_path).glob("trial_*"):
        for old in sorted(trial.glob("checkpoint_*"))[:-1]:
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, float) else v) for k, v in metrics.items()}


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# --------------------------------------------------------------------------- results


def result_row(plan: SearchPlan, trial: Any) -> dict[str, Any]:
    """One `trials.csv` row from a Tune trial (its config and last result)."""
    result = dict(trial.last_result or {})
    status = result.get("status", "stopped")
    if trial.status == "ERROR":
        status = "error"
    elif status == "running":
        status = "stopped"  # stopped early by the scheduler
    row: dict[str, Any] = {"trial_id": trial.trial_id, "status": status}
    row |= {key: trial.config.get(key) for key in plan.space.keys}
    row |= {metric: result.get(metric) for metric in METRICS}
    row |= {field: result.get(field) for field in FIELDS_AFTER_METRICS}
    row["mi_bound"] = plan.mi_metric
    row["time_s"] = result.get("time_total_s")
    row["ended_at"] = result.get("timestamp")  # unix seconds of the last result
    if status == "error":
        row["reason"] = _error_text(trial)
    return row


def _error_text(trial: Any) -> str:
    try:
        text = str(trial.get_error() or "")
    except Exception:  # the error file may be gone; the status says enough
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "the trial raised (see its error.txt)"


class Progress(tune.Callback):
    """One line per finished trial on stdout, and `trials.csv` rewritten each time."""

    def __init__(self, plan: SearchPlan):
        self.plan = plan
        self.rows: dict[str, dict[str, Any]] = {}

    def setup(self, **info: Any) -> None:
        self.rows = read_rows(self.plan.trials_csv)  # a resumed search keeps earlier rows

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in trials:
            if trial.status in ("TERMINATED", "ERROR"):
                self.rows[trial.trial_id] = result_row(self.plan, trial)
        self._write()

    def _finish(self, trial: Any) -> None:
        row = result_row(self.plan, trial)
        self.rows[trial.trial_id] = row
        self._write()
        print(format_line(self.plan, row, len(self.rows)), flush=True)

    def _write(self) -> None:
        self.plan.local_dir.mkdir(parents=True, exist_ok=True)
        write_rows(self.plan.trials_csv, csv_fields(self.plan), self.rows.values())
        upload(self.plan, "trials.csv")


# --------------------------------------------------------------------------- summary


def _refused_points(plan: SearchPlan) -> int:
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=plan.study_url)
    except KeyError:  # no study (nothing was asked)
        return 0
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
    return sum(t.user_attrs.get("status") == "refused" for t in trials)


def summarize(plan: SearchPlan) -> Summary:
    """What trials.csv says, with the refused points counted in the Optuna study."""
    return read_summary(plan, _refused_points(plan))


def upload(plan: SearchPlan, filename: str) -> None:
    """With a URI storage, copy a driver-side file next to Tune's files there."""
    if not plan.is_remote:
        return
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(plan.experiment_path)
    filesystem.create_dir(root, recursive=True)
    pyarrow.fs.copy_files(
        str(plan.local_dir / filename), f"{root}/{filename}", destination_filesystem=filesystem
    )


# --------------------------------------------------------------------------- running


def run_search(
    experiment: Experiment,
    *,
    storage: str | None = None,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    explicit_metrics: bool = False,
) -> Summary:
    """Plan (no Ray), start or join Ray, run or resume the Tuner, write and return the summary."""
    if resume:
        experiment = _stored_experiment(experiment, storage)
        explicit_metrics = True
    plan = plan_search(
        experiment, storage=storage, resume=resume, explicit_metrics=explicit_metrics
    )
    if plan.name != experiment.name:
        print(
            f"note: a search named {experiment.name} is already in {plan.storage}; this one is "
            f"{plan.name} (continue the earlier one with --resume)"
        )
    if resume and not tune.Tuner.can_restore(plan.experiment_path):
        raise ConfigError(f"--resume: no search to resume at {plan.experiment_path}")
    _announce(plan, resume)
    _quiet_tune()
    started = _start_ray(address, num_cpus)
    try:
        trainable = _trainable(plan)
        if resume:
            tuner = tune.Tuner.restore(
                plan.experiment_path,
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            tuner = _new_tuner(plan, trainable)
        tuner.fit()
        fail_orphans(plan)
        prune_checkpoints(plan)
    finally:
        if started:
            ray.shutdown()
    upload(plan, "optuna.db")
    return replace(summarize(plan), dashboard=_dashboard(plan))


def _dashboard(plan: SearchPlan) -> str:
    """Write the HTML report next to the results; a failure here never loses the results."""
    if plan.is_remote or not plan.trials_csv.is_file():
        return ""
    try:
        return str(write_report(plan.experiment_path))
    except Exception as error:  # the search is done and saved: report, don't raise
        print(f"note: no dashboard written ({type(error).__name__}: {error})")
        return ""


def _stored_experiment(experiment: Experiment, storage: str | None) -> Experiment:
    """The experiment a search started with: `--resume` continues that one."""
    root = storage or experiment.storage
    path = Path(root).expanduser() / experiment.name / "experiment.yaml"
    if "://" in root:
        path = Path.home() / ".cache" / "infoae-search" / experiment.name / "experiment.yaml"
    if not path.is_file():
        raise ConfigError(f"--resume: no search to resume ({path} not found)")
    stored = load_experiment(path)
    given, kept = experiment.to_dict(), stored.to_dict()
    changed = [k for k in given if k not in ("storage", "search") and given[k] != kept[k]]
    if changed:
        print(f"note: resuming with {path}; changes to {', '.join(changed)} are ignored")
    return stored


def _announce(plan: SearchPlan, resume: bool) -> None:
    plan.local_dir.mkdir(parents=True, exist_ok=True)
    if not resume and plan.is_remote:  # the local copy of an earlier search of that name
        for stale in ("trials.csv", "optuna.db"):
            (plan.local_dir / stale).unlink(missing_ok=True)
    if not resume:
        text = yaml.safe_dump(plan.experiment.to_dict(), sort_keys=False, allow_unicode=True)
        (plan.local_dir / "experiment.yaml").write_text(text)
        upload(plan, "experiment.yaml")
    e = plan.experiment
    verb = "resuming" if resume else "searching"
    print(
        f"{verb} {e.name}: {plan.num_samples} trials, {e.search.sampler} sampler, "
        f"{e.search.max_concurrent} at a time; objectives "
        + ", ".join(f"{m} ({mode})" for m, mode in zip(plan.metrics, plan.modes, strict=True))
    )
    if plan.mi_bound:
        print(f"MI objective: {plan.mi_bound}")
    for line in describe(plan.space):
        print(f"  {line}")
    if e.search.sampler == "grid" and plan.num_samples != e.search.num_samples:
        print(
            f"note: the grid sampler runs a full grid of {plan.num_samples} trials, "
            f"not search.num_samples={e.search.num_samples}"
        )


def _quiet_tune() -> None:
    """One line per trial is ours to print: Tune's tables, banners and snapshot warnings go."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter obeys verbose=0
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # a resumed search has trials killed before their first result: trials.csv says so
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join `address` / RAY_ADDRESS, or start a local Ray; False if one was already running."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    # Trial output stays in Ray's logs and each trial's error.txt (its last line is in
    # trials.csv and the progress line); the console shows one line per finished trial.
    quiet = {"logging_level": logging.WARNING, "configure_logging": True, "log_to_driver": False}
    if address:  # ship our packages to the cluster's workers with the job
        root = Path(__file__).resolve().parents[1]
        modules = [str(root / p) for p in ("objectives", "search", "analysis")]
        ray.init(address=address, runtime_env={"py_modules": modules}, **quiet)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    return True


def _resources(plan: SearchPlan) -> dict[str, float]:
    """Per-trial resources; gpu asked of a cluster without GPUs falls back to CPU, said once."""
    cpu, gpu = plan.experiment.resources.cpu, plan.experiment.resources.gpu
    if gpu > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        print(f"note: resources.gpu={gpu:g} but the Ray cluster has no GPU: trials run on CPU")
        gpu = 0.0
        cpu = cpu or 1.0
    return {"cpu": cpu, "gpu": gpu}


def _trainable(plan: SearchPlan) -> Any:
    trainable = tune.with_parameters(run_trial, experiment=plan.experiment)
    return tune.with_resources(trainable, _resources(plan))


def _new_tuner(plan: SearchPlan, trainable: Any) -> tune.Tuner:
    search = plan.experiment.search
    multi = len(plan.metrics) > 1
    metric = list(plan.metrics) if multi else plan.metrics[0]
    mode = list(plan.modes) if multi else plan.modes[0]
    searcher = FamilySearch(
        distributions(plan.space),
        metric=metric,
        mode=mode,
        points_to_evaluate=[dict(p) for p in plan.points] or None,
        sampler=make_sampler(plan),
        study_name=STUDY_NAME,
        storage=optuna.storages.RDBStorage(plan.study_url),
        experiment=plan.experiment,
    )
    if search.scheduler == "asha":
        evaluations = math.ceil(plan.experiment.train.steps / plan.experiment.train.eval_every)
        scheduler = ASHAScheduler(
            metric=metric, mode=mode, max_t=evaluations, grace_period=1, reduction_factor=3
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent),
            scheduler=scheduler,
            num_samples=plan.num_samples,
            trial_dirname_creator=trial_dirname,
            reuse_actors=True,  # a trial's process is kept for the next: torch is imported once
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=plan.storage,
            failure_config=tune.FailureConfig(max_failures=search.max_failures),
            # all of them until the search ends: see prune_checkpoints
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=[Progress(plan)],
            verbose=0,
        ),
    )


# --------------------------------------------------------------------------- command line


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


def main_search(args: Any) -> int:
    """`run_search.py search`: 0 when trials finished ok, 1 when none did, 2 on a bad input."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        experiment = load_experiment(args.experiment, args.overrides)
        summary = run_search(
            experiment,
            storage=args.storage,
            resume=args.resume,
            address=args.address,
            num_cpus=args.num_cpus,
            explicit_metrics=metrics_given(args.experiment, args.overrides),
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    return 0 if summary.counts["ok"] else 1
