"""Tune's searcher over the search's one Optuna study, and the actor that holds the study.

`FamilySearcher` is a Tune `Searcher` (public APIs only); the `FamilyStudy` it asks and tells
lives in a `StudyHost` actor on the driver's node, which the rolling trials reach too
(`search.rolling`). With `search.tune` the only modules that import ray (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from search.members import MEMBERS, SLOTS, final, member_key
from search.relocate import resumed
from search.study import FamilyStudy

# --------------------------------------------------------------------------- the study's host


@ray.remote(num_cpus=0)
class StudyHost:
    """The search's one `FamilyStudy`, in an actor on the driver's node: the searcher (in the
    driver) and the rolling trials (anywhere in the cluster) ask and tell through it, so the
    budget and the member names have one keeper, and a journal on the driver's disk (a URI
    storage's local mirror) is written by the driver's machine only. Calls run one at a time."""

    def __init__(self, study: FamilyStudy, restored: bool = False) -> None:
        self.study = study
        self.restored = restored  # began from the saved state: Tune's restore brings no news

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.study, method)(*args)

    def get(self) -> FamilyStudy:
        return self.study

    def put(self, study: FamilyStudy) -> None:
        """Tune's restore of the searcher: ignored when the host began from that state (the
        trials may have asked and told since, and Tune's copy would forget it); else its
        progress, on this driver's paths (`search.relocate`)."""
        if not self.restored:
            self.study, self.restored = resumed(study, self.study), True


def host_name() -> str:
    """The study actor of this driver (one search at a time per driver process)."""
    return f"infoae-study-{os.getpid()}"


def start_host(study: FamilyStudy, experiment_path: str | None = None, anew: bool = False) -> Any:
    """The study's actor on this node. With `experiment_path` (a resume), it begins from the
    searcher state Tune saved there, if any: before Tune restores the searcher, resumed trials
    may already ask and tell. `anew`: Tune starts again (no whole state of its was saved), so
    no earlier trial resumes: the sampler goes on, every member still running is orphaned."""
    restored = False
    if experiment_path is not None:
        saved = saved_study(Path(experiment_path))
        if saved is not None:  # its progress; the paths are this driver's (a moved folder)
            if anew:  # counted again from the study as it opens: finished members only
                saved.numbers, saved.rolling_trials = {}, set()
            study, restored = resumed(saved, study), True
    here = ray.get_runtime_context().get_node_id()
    pinned = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
    actor = StudyHost.options(name=host_name(), scheduling_strategy=pinned)
    return actor.remote(study, restored)


def saved_study(experiment_path: Path) -> FamilyStudy | None:
    """The study in the newest searcher state Tune saved in the experiment folder."""
    saved = sorted(experiment_path.glob(Searcher.CKPT_FILE_TMPL.format("*")), key=os.path.getmtime)
    for path in reversed(saved):
        try:
            with path.open("rb") as handle:
                study = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError):
            continue  # cut short by a kill: an older one
        study = study.get("study") if isinstance(study, dict) else study  # see save
        if isinstance(study, FamilyStudy):
            return study
    return None


class Remote:
    """A `FamilyStudy`'s methods, called on its actor (`search.rolling.StudyLink` and more)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        handle = ray.get_actor(self.name)
        return lambda *args: ray.get(handle.call.remote(method, *args))


# --------------------------------------------------------------------------- the searcher


MAX_EMPTY_FAILURES = 3  # rolling trials in a row that fail before asking a member: stop


class FamilySearcher(Searcher):
    """Tune's searcher interface over the search's `FamilyStudy` (in its `StudyHost` actor;
    Optuna ask/tell, public APIs only).

    Its saved state (`save`) is the study with the searcher's own settings, so Ray's pattern
    `FamilySearcher().restore(path)` (or `restore_from_dir`) gives back the searcher that saved
    it: the study goes to this driver's host actor, started here when none runs yet."""

    def __init__(
        self,
        metrics: tuple[str, ...] = ("nll", "mi"),
        modes: tuple[str, ...] = ("min", "max"),
        population: int = 1,
        rolling: bool = False,
    ):
        super().__init__()
        self._settle(tuple(metrics), tuple(modes), population, rolling)

    def _settle(self, metrics: tuple, modes: tuple, population: int, rolling: bool) -> None:
        multi = len(metrics) > 1
        self._metric = list(metrics) if multi else metrics[0]
        self._mode = list(modes) if multi else modes[0]
        self.metrics, self.modes = metrics, modes
        self.population = population  # points per Tune trial: each is its own Optuna trial
        self.rolling = rolling  # its trials ask their members themselves (search.rolling)

    @property
    def study(self) -> Any:
        return Remote(host_name())  # found by name: the searcher is pickled with the Tuner

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.study.exhausted():  # the study counts the trials, so resumes count right
            return Searcher.FINISHED
        if self.rolling:
            if getattr(self, "empty_failures", 0) >= MAX_EMPTY_FAILURES:
                print(
                    f"error: {MAX_EMPTY_FAILURES} rolling trials in a row failed before any "
                    "member trained (each trial's error.txt says why); the search stops"
                )
                return Searcher.FINISHED  # else Tune would start new ones without end
            self.study.add_rolling(trial_id)
            return {SLOTS: self.population}
        if self.population == 1:
            return self.study.ask(trial_id)
        return {MEMBERS: self.study.ask_population(trial_id, self.population)}

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Each member told (a point's trial: itself), with its final status."""
        size = len(self.study.members_of(trial_id)) or None  # None: a point's trial
        if self.rolling:
            failed_empty = error and size is None
            self.empty_failures = getattr(self, "empty_failures", 0) + 1 if failed_empty else 0
        for member in final(result, size, error):
            key = member_key(trial_id, member.index)
            self.study.tell(key, member.status, member.metrics, self.metrics)

    def forget(self, trial_id: str) -> None:
        """A trial Tune lost in a kill never reports: its members go back to the budget."""
        self.study.forget(trial_id)

    def save(self, checkpoint_path: str) -> None:
        study = ray.get(ray.get_actor(host_name()).get.remote())
        settings = (self.metrics, self.modes, self.population, self.rolling)
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"study": study, "searcher": settings}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            saved = pickle.load(handle)  # the study reopens its storage, and what it holds, on use
        if isinstance(saved, dict):  # else a bare study, saved before the settings were
            self._settle(*saved["searcher"])
            saved = saved["study"]
        try:
            host = ray.get_actor(host_name())
        except ValueError:  # a blank searcher in a new driver: the study gets its host here,
            self.host = start_host(saved)  # held: an actor lives while a handle does
            return
        ray.get(host.put.remote(saved))


class Generator(SearchGenerator):
    """Tune's wrapper of a searcher, which saves Tune's `Experiment` and brings it back on a
    restore with the storage it had: the trials it creates after a moved folder's restore
    would write to the old path. Its storage is the running driver's, as Tune does for the
    trials it restores (`TuneController._restore_trials`)."""

    here: tuple[str, str] | None = None  # the running driver's (storage, name): search.tune
    restored: Generator | None = None  # restored in this driver, not yet settled (search.tune)

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        Generator.restored = self

    def settle(self, live: set[str]) -> None:
        """After a restore, the concurrency limit counts exactly the unfinished trials Tune
        resumed (`live`). A driver killed while its state was written can leave the searcher's
        copy ahead of Tune's trials: a trial it suggested and Tune lost would hold a slot
        forever, and Tune would wait for a trial the searcher never gives. Such a trial is
        forgotten (its members orphaned, asked again). One Tune holds and the copy lacks is
        counted, so its end reaches the searcher; and every trial Tune holds keeps its running
        members (else a study saved before they were asked would, opening, orphan them and ask
        their budget again while the trial trains on)."""
        limiter = self.searcher
        if not isinstance(limiter, ConcurrencyLimiter):
            return
        for trial_id in sorted(live):  # first (forget opens the study); the limiter's and
            limiter.searcher.study.add_rolling(trial_id)  # the study's states are two files
        for trial_id in sorted(limiter.live_trials - live):
            limiter.searcher.forget(trial_id)
        limiter.live_trials = set(live)
        limiter.num_unfinished_live_trials = len(live)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self._experiment is None or Generator.here is None:
            return
        storage, name = Generator.here
        filesystem, path = pyarrow.fs.FileSystem.from_uri(storage)
        moved = copy.copy(self._experiment.storage)
        moved.storage_filesystem, moved.storage_fs_path = filesystem, Path(path).as_posix()
        moved.experiment_dir_name = name
        self._experiment.storage = self._experiment.spec["storage"] = moved  # trials: the spec's
