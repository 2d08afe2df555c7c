"""The search on Ray Tune: with `search.searcher`, the only modules that import ray.

Tune runs `run_trial` (`search.trial`: a point, a population of K, or a rolling population
of K slots, `search.rolling`); Optuna proposes (α1, α2, λ) through `search.searcher`'s
`FamilySearcher` and the study's actor; `Progress` writes trials.csv. One file scales from a
laptop to a cluster (`--address`; `storage` shared or a URI). A trial that raises is retried
`search.max_failures` times; `--resume` restores the Tune experiment, the study from its
storage, a trial from its newest checkpoint.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from experiment.config import ConfigError, Experiment
from search import checkpoints, guards, lock, torn
from search import trial as trial_body
from search.interrupt import Interrupted, Interrupts
from search.members import SLOTS
from search.plan import (
    JOURNAL_FILE,
    SearchPlan,
    announce,
    check_reachable,
    plan_search,
    stored_experiment,
    write_experiment,
)
from search.searcher import FamilySearcher, Generator, Remote, host_name, start_host
from search.study import FamilyStudy, make_sampler
from search.trials import Ledger, read_rows, recover_rows

# --------------------------------------------------------------------------- the trainable


def run_trial(
    config: dict[str, Any], experiment: Experiment, experiment_path: str, study_host: str = ""
) -> None:
    """One Tune trial (`search.trial.run`): a point, a population's `members`, or a rolling
    population's `slots`, reporting every evaluation with a checkpoint; resumed from the
    newest checkpoint on a restore. `study_host`: the name of the study's actor."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    placement = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()),
    }
    named = tune.get_checkpoint()
    trial_dir = Path(experiment_path) / checkpoints.trial_dirname(tune.get_context().get_trial_id())
    io = trial_body.TrialIO(
        report=_report,
        open_checkpoint=lambda path: tune.Checkpoint.from_directory(str(path)).as_directory(),
        paths=checkpoints.candidates(trial_dir, named.path if named is not None else None),
        threads=max(1, math.ceil(experiment.resources.cpu)),  # the CPUs Ray granted the trial
        extra=placement,
        study=Remote(study_host) if SLOTS in config else None,
        trial_id=tune.get_context().get_trial_id(),
    )
    trial_body.run(config, experiment, io)


def _report(metrics: dict[str, Any], directory: Path | None) -> None:
    if directory is None:
        tune.report(metrics)
    else:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(directory)))


# --------------------------------------------------------------------------- progress


class Progress(tune.Callback):
    """Tune's callbacks into `search.trials.Ledger`: trials.csv rows and a line per trial.

    Tune pickles its callbacks into the experiment folder and a restore hands back those
    copies, so the plan (its paths: a folder may have moved) is the running driver's
    (`Progress.driver`), never a pickled one."""

    driver: tuple[SearchPlan, Callable[[SearchPlan], Any] | None, Interrupts] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def setup(self, **info: Any) -> None:
        assert Progress.driver is not None, "run_search sets the driver's plan"
        plan, after_trial, self.stop = Progress.driver
        self.ledger = Ledger(plan, after_trial)
        self.ledger.load()

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if Generator.restored is not None:  # the first step after a restore: Tune's trials
            Generator.restored.settle({t.trial_id for t in trials if not t.is_finished()})
            Generator.restored = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ledger.start(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.ledger.result(trial, result)  # a rolling population's members end as it trains

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ledger.finish(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ledger.check_fault(trial)  # a full disk: stop now, before a retry fails again

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ledger.check_fault(trial)
        self.ledger.finish(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # interrupted: Tune ends the running trials after its snapshot; they are not finished
        self.ledger.end(trials if self.stop.signum is None else [])


# --------------------------------------------------------------------------- running


def run_search(
    experiment: Experiment,
    *,
    storage_root: str | None = None,
    resume: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    after_trial: Callable[[SearchPlan], Any] | None = None,
) -> tuple[SearchPlan, FamilyStudy]:
    """Plan (no Ray), start or join Ray, run or resume the Tuner; the plan and the study.
    `after_trial(plan)` runs in the driver after each finished trial's row is written."""
    if resume:
        experiment = stored_experiment(experiment, storage_root)
    address = address or os.environ.get("RAY_ADDRESS")
    plan = plan_search(experiment, storage_root=storage_root, resume=resume, address=address)
    guards.before_ray(plan, num_cpus, address)  # what could never run: one line, nothing written
    if plan.name != experiment.name:
        print(
            f"note: a search named {experiment.name} is already in {plan.storage}; this one is "
            f"{plan.name} (continue the earlier one with --resume)"
        )
    if address and not ray.is_initialized():
        check_reachable(address)  # in seconds, before anything is written
    held = lock.acquire(plan.local_dir)  # one driver per experiment folder, or one line
    for note in torn.repair(plan):  # files cut short, made whole before anything appends
        print(note)
    restore = resume and tune.Tuner.can_restore(plan.experiment_path)
    if resume and not restore:  # the study and trials.csv hold what finished: Tune starts anew
        print(
            "note: Tune saved no whole state before the earlier driver stopped; starting it "
            "again (trials that had not finished are asked again)"
        )
    if not resume:
        write_experiment(plan)
    for line in announce(plan, resume):
        print(line)
    _quiet_tune()
    pending = str(plan.experiment.search.max_concurrent)  # Tune < 2.57: 1 for our searcher
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", pending)
    started = _start_ray(address, num_cpus)
    host, stop = None, Interrupts()
    Progress.driver = (plan, after_trial, stop)
    Generator.here = (plan.storage, plan.name)
    try:
        stop.__enter__()
        host = start_host(_study(plan), plan.experiment_path if resume else None, not restore)
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial,
                experiment=plan.experiment,
                experiment_path=plan.experiment_path,
                study_host=host_name(),
            ),
            _resources(plan),
        )
        if restore:
            tuner = tune.Tuner.restore(
                plan.experiment_path, trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            tuner = _new_tuner(plan, trainable)
        stop.tuning(True)
        grid = tuner.fit()
        stop.tuning(False)
        study = ray.get(host.get.remote())  # reopens its storage here, in the driver
        if stop.signum is None:  # else the running trials and every checkpoint stay
            study.fail_orphans()
            for key in recover_rows(plan, study.told()):
                print(
                    f"note: {key}: its trials.csv row was lost; written again from its checkpoint"
                )
            _prune(plan, grid)
    finally:
        stop.__exit__()
        Progress.driver, Generator.here, Generator.restored = None, None, None
        if host is not None:
            ray.kill(host)
        if started:
            ray.shutdown()
        held.release()
    plan.sync(JOURNAL_FILE)
    if stop.signum is not None:
        raise Interrupted(stop.signum, plan, len(read_rows(plan.trials_csv)))
    return plan, study


def _prune(plan: SearchPlan, grid: Any) -> None:
    """Checkpoints that no Tune record names go (`search.checkpoints.prune`); those its
    final snapshot names (`Result.best_checkpoints`, `get_best_checkpoint`) all stay."""
    if plan.is_remote:
        return
    named = set()
    for result in grid:
        named |= {c.path for c, _ in result.best_checkpoints or ()}
        named |= {result.checkpoint.path} if result.checkpoint is not None else set()
    checkpoints.prune(plan.experiment_path, named)


def _study(plan: SearchPlan) -> FamilyStudy:
    return FamilyStudy(
        plan.study,
        plan.experiment,
        plan.space,
        make_sampler(plan),
        plan.modes,
        owner=plan.name,  # not its path: a moved folder keeps its trials (search.journal)
        budget=plan.num_samples,
        points=plan.points,
        metrics=plan.metrics,
    )


def _new_tuner(plan: SearchPlan, trainable: Any) -> tune.Tuner:
    search = plan.experiment.search
    population = int(plan.experiment.search.population)  # resolved by the plan
    rolling = search.refill and (population > 1 or search.scheduler == "halving")
    searcher = FamilySearcher(plan.metrics, plan.modes, population, rolling)
    scheduler: Any = FIFOScheduler()
    if search.scheduler == "asha":
        evaluations = math.ceil(plan.experiment.train.steps / plan.experiment.train.eval_every)
        scheduler = ASHAScheduler(  # its metric and mode: the TuneConfig's
            max_t=evaluations,
            grace_period=1,
            reduction_factor=3,
        )
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=Generator(ConcurrencyLimiter(searcher, search.max_concurrent)),
            scheduler=scheduler,
            # the first objective, for Ray's tools: `ResultGrid.get_best_result()` without
            # arguments (a population trial reports its best member: search.members)
            metric=plan.metrics[0],
            mode=plan.modes[0],
            num_samples=-1,  # until the searcher's budget (plan.num_samples) is spent
            trial_dirname_creator=lambda trial: checkpoints.trial_dirname(trial.trial_id),
            reuse_actors=True,  # a trial's process is kept for the next: torch is imported once
        ),
        run_config=tune.RunConfig(
            name=plan.name,
            storage_path=plan.storage,
            failure_config=tune.FailureConfig(max_failures=search.max_failures),
            # all of them until the search ends: see search.checkpoints
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            callbacks=[Progress()],
            verbose=0,
        ),
    )


def _quiet_tune() -> None:
    """One line per trial is ours to print: Tune's tables, banners and snapshot warnings go."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter obeys verbose=0
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # our line names error.txt
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # search.interrupt hands it to Tune
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)  # resumes
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)  # an interrupt: our line says
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ..."


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join `address`, or start a local Ray; False if one was already running. Trial output
    stays in Ray's logs and each trial's error.txt: the console shows a line per trial."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "configure_logging": True, "log_to_driver": False}
    if not address:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        return True
    root = Path(__file__).resolve().parents[1]  # ship our packages to the cluster's workers
    modules = [
        str(root / p) for p in ("objectives", "experiment", "training", "search", "analysis")
    ]
    try:
        ray.init(address=address, runtime_env={"py_modules": modules}, **quiet)
    except (ConnectionError, RuntimeError, TimeoutError) as error:
        raise ConfigError(f"--address {address}: could not join the Ray cluster: {error}") from None
    return True


def _resources(plan: SearchPlan) -> dict[str, float]:
    """Per-trial resources; gpu asked of a cluster without GPUs falls back to CPU, said once."""
    cpu, gpu = plan.experiment.resources.cpu, plan.experiment.resources.gpu
    if gpu > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        print(f"note: resources.gpu={gpu:g} but the Ray cluster has no GPU: trials run on CPU")
        gpu = 0.0
        cpu = cpu or 1.0
    guards.check_fits([n["Resources"] for n in ray.nodes() if n.get("Alive")], cpu, gpu)
    return {"cpu": cpu, "gpu": gpu}
