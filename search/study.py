"""The Optuna side of a search, on Optuna's public ask/tell API: `FamilyStudy`.

Optuna proposes the multipliers; `search.tune` wraps a `FamilyStudy` as Ray Tune's searcher.
A point the compiler refuses is told to Optuna as failed and another is asked for, so it is
never trained; a trial that ended other than `ok` or `stopped` with finite values is told as
failed, never as NaN values. Each Optuna trial carries as user attributes the Tune trial id,
its member index (population trials), the experiment folder's name and its status (the words of
`experiment.status`: `refused` and `orphaned` for points that never ran).

The study lives with the experiment: the journal `optuna.journal` in its folder, written as each
trial is told (its file lock works on shared filesystems, SQLite's does not), or any Optuna
storage URL in `search.study` (`postgresql://`, `sqlite:///`) that drivers and dashboards share.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from experiment.config import Experiment, default_metrics
from experiment.samplers import SAMPLERS, SamplerInputs
from experiment.status import ERROR, NOT_COUNTED, ORPHANED, PRUNED, REFUSED, TOLD_AS_COMPLETE
from experiment.status import PRUNED_VALUES_ATTR as RUNG_VALUES
from search.feasibility import refusal
from search.halving import stops
from search.journal import STUDY_NAME, label, open_storage, owns
from search.members import member_key, parse_key
from search.plan import SearchPlan, grid_values_per_param
from search.spaces import Space


def make_sampler(plan: SearchPlan) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `search.sampler` names (a row of `experiment.samplers.SAMPLERS`),
    seeded (`search.seed`, else the experiment's), told how many points are asked at once."""
    search = plan.experiment.search
    sampler = SAMPLERS[search.sampler]
    seed = plan.experiment.sampler_seed
    grid = {}
    if sampler.grid:
        per_param = grid_values_per_param(plan.space, plan.num_samples)
        grid = {p.key: p.grid(per_param) for p in plan.space.params}
    population = int(search.population)  # resolved by the plan
    blind = min(plan.num_samples, population * search.max_concurrent)  # asked before a result
    with warnings.catch_warnings():  # TPE's multivariate and constant_liar: still flagged
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return sampler.build(optuna.samplers, SamplerInputs(seed, plan.num_samples, grid, blind))


def distributions(space: Space) -> dict[str, FloatDistribution]:
    return {p.key: FloatDistribution(p.low, p.high, log=p.log) for p in space.params}


class FamilyStudy:
    """Ask for points the compiler accepts, tell results with our statuses; picklable.

    `key` is the caller's name for a trial: Tune's trial id, or `id#k` for member k of a
    population trial. The mapping key -> Optuna trial number is rebuilt from the study's user
    attributes when the study is opened, so a resumed driver (or another machine) continues
    where the study stands.
    """

    max_refusals = 50

    def __init__(
        self,
        study: str,
        experiment: Experiment,
        space: Space,
        sampler: optuna.samplers.BaseSampler,
        directions: Sequence[str],
        *,
        owner: str,
        budget: int,
        points: Sequence[Mapping[str, float]] = (),
        metrics: Sequence[str] = (),
    ):
        self.study_url = study
        self.experiment = experiment
        self.distributions = distributions(space)
        self.sampler = sampler
        self.directions = [("minimize" if d == "min" else "maximize") for d in directions]
        self.modes = tuple(directions)
        given = experiment.search.metrics or default_metrics(experiment.dataset.name)
        self.metric_names = tuple(metrics) or tuple(given)
        self.owner = owner  # the experiment folder's name: its trials (search.journal.owns)
        self.budget = budget  # trials this search runs (refused points do not count)
        self.points = [dict(p) for p in points]
        self._study: optuna.Study | None = None
        self._storage: BaseStorage | None = None
        self.numbers: dict[str, int] = {}
        self.rolling_trials: set[str] = set()  # Tune trials that ask their own members

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_study": None, "_storage": None}  # locks and connections

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__ = {"rolling_trials": set(), **state}  # saved before rolling trials existed

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._storage = open_storage(self.study_url)
            self._study = optuna.create_study(
                storage=self._storage,
                study_name=STUDY_NAME,
                sampler=self.sampler,
                directions=self.directions,
                load_if_exists=True,
            )
            label(self._study, self.experiment, self.metric_names, self.modes)
            ours = self._ours()
            if not ours:
                for point in self.points:  # the paper's points first, once per search
                    self._study.enqueue_trial(point, user_attrs={"owner": self.owner})
            self._fail_forgotten(ours)
        return self._study

    def _fail_forgotten(self, ours: list[optuna.trial.FrozenTrial]) -> None:
        """Fail the running trials that the caller's saved state does not know: asked after
        its last snapshot by a driver that then died, they will never report (Tune resumes
        only the trials its snapshot holds). The others are counted from the study."""
        known = set(self.numbers.values())
        for trial in ours:
            if trial.user_attrs.get("tune_trial_id") in self.rolling_trials:
                known.add(trial.number)  # a rolling trial Tune resumes: it claim()s its own
            elif trial.state == TrialState.RUNNING and trial.number not in known:
                self._set_attr(trial.number, "status", ORPHANED)
                self._tell(trial.number, None, TrialState.FAIL)
        self.numbers = {
            member_key(t.user_attrs["tune_trial_id"], t.user_attrs.get("member")): t.number
            for t in ours
            if (t.state != TrialState.RUNNING or t.number in known)
            and t.user_attrs.get("status") not in NOT_COUNTED
        }

    def exhausted(self) -> bool:
        """Whether the budget is spent: trials asked and run, or running. The study keeps the
        count, so a resumed search runs exactly as many trials as an uninterrupted one."""
        _ = self.study  # opened: the count is the study's
        return len(self.numbers) >= self.budget

    def _ours(self, states: Sequence[TrialState] | None = None) -> list[optuna.trial.FrozenTrial]:
        trials = self.study.get_trials(deepcopy=False, states=states)
        return [
            t
            for t in trials
            if owns(self.owner, t.user_attrs.get("owner")) and "tune_trial_id" in t.user_attrs
        ]

    # ----------------------------------------------------------------- ask and tell

    def ask(self, trial_id: str, member: int | None = None) -> dict[str, float]:
        """A point the compiler accepts (dotted key -> value); refused ones are told failed.
        `member`: the point's place in a population trial (its key `trial_id#member`)."""
        reason = ""
        for _ in range(self.max_refusals):
            trial = self.study.ask(self.distributions)
            trial.set_user_attr("owner", self.owner)
            trial.set_user_attr("tune_trial_id", trial_id)
            if member is not None:
                trial.set_user_attr("member", member)
            reason = refusal(self.experiment, trial.params)
            if reason is None:
                self.numbers[member_key(trial_id, member)] = trial.number
                return dict(trial.params)
            trial.set_user_attr("status", REFUSED)
            trial.set_user_attr("reason", reason)
            self._tell(trial.number, None, TrialState.FAIL)
        raise RuntimeError(f"the compiler refused {self.max_refusals} points in a row: {reason}")

    def add_rolling(self, trial_id: str) -> None:
        """A trial whose running members a resumed driver leaves to it: a rolling trial
        (it claims them) or one Tune resumed that the saved state lacks (`Generator.settle`)."""
        self.rolling_trials.add(trial_id)

    def forget(self, trial_id: str) -> None:
        """A trial a resumed Tune lost (`Generator.settle`): its unfinished members orphaned."""
        self.rolling_trials.discard(trial_id)
        self.claim(trial_id, ())

    def ask_member(self, trial_id: str, member: int) -> dict[str, float] | None:
        """A rolling trial's next point (`search.rolling`), None once the budget is spent."""
        return None if self.exhausted() else self.ask(trial_id, member)

    def claim(self, trial_id: str, keys: Sequence[str]) -> None:
        """A resumed rolling trial holds `keys`: its other running members were asked after
        its checkpoint and will never train: `orphaned`, not counted."""
        _ = self.study  # opened: `numbers` holds what the storage holds
        held = set(keys)
        for key, number in list(self.numbers.items()):
            if parse_key(key)[0] != trial_id or key in held or self._finished(number):
                continue
            self._set_attr(number, "status", ORPHANED)
            self._tell(number, None, TrialState.FAIL)
            del self.numbers[key]

    def rung(self, key: str, step: int, metrics: Mapping[str, Any]) -> bool:
        """Record `key`'s values at the rung `step` and say whether it stops there
        (`search.halving.stops` against every member of this search recorded at that rung)."""
        _ = self.study  # opened: `numbers` holds what the storage holds
        names = self.metric_names
        values = [_finite_or_nan(metrics.get(name)) for name in names]
        attr = f"rung_{step}"
        peers = [t.user_attrs[attr] for t in self._ours() if attr in t.user_attrs]
        self._set_attr(self.numbers[key], attr, values)
        return stops(peers, values, self.experiment.search.halving_rate, self.modes)

    def ask_population(self, trial_id: str, size: int) -> list[dict[str, float]]:
        """Points for one population trial: `size` members, fewer when the budget ends."""
        left = self.budget - len(self.numbers)
        return [self.ask(trial_id, member) for member in range(max(0, min(size, left)))]

    def members_of(self, trial_id: str) -> list[str]:
        """The keys of a population trial's members, in order (none for a point's trial)."""
        indices = {parse_key(key): key for key in self.numbers}
        mine = sorted(k for t, k in indices if t == trial_id and k is not None)
        return [indices[(trial_id, k)] for k in mine]

    def tell(self, key: str, status: str, metrics: Mapping[str, Any], names: Sequence[str] = ()):
        """Tell the result of `key` (a trial id, or `member_key` of a population's member);
        one told before (a resumed search) is skipped. `names`: the objectives' metrics
        (default: the search's)."""
        _ = self.study  # opened: `numbers` holds what the storage holds
        names = names or self.metric_names
        number = self.numbers.get(key)
        if number is None:
            return
        values = [metrics.get(name) for name in names]
        usable = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        if self._finished(number):
            if status in TOLD_AS_COMPLETE and usable:
                self._retried(key, number, status, [float(v) for v in values])
            return
        self._set_attr(number, "status", status)
        if status in TOLD_AS_COMPLETE and usable:
            self._tell(number, [float(v) for v in values], TrialState.COMPLETE)
        elif status == PRUNED:  # Optuna keeps no values for a pruned multi-objective trial
            self._set_attr(number, RUNG_VALUES, [_finite_or_nan(v) for v in values])
            self._tell(number, None, TrialState.PRUNED)
        else:
            self._tell(number, None, TrialState.FAIL)

    def _retried(self, key: str, number: int, status: str, values: list[float]) -> None:
        """A trial told `error` that finished after all (Tune retries errored trials on
        `--resume`, e.g. after a full disk): its result is added as a new COMPLETE trial of
        the same point and key (a finished trial cannot be told again), which replaces the
        failed one in the count."""
        old = self.study.get_trials(deepcopy=False)[number]
        if old.state != TrialState.FAIL or old.user_attrs.get("status") != ERROR:
            return  # told before, e.g. a finished trial reported again on a resume
        attrs = {**old.user_attrs, "status": status, "retry_of": number}
        self.study.add_trial(
            optuna.trial.create_trial(
                params=old.params, distributions=old.distributions, values=values, user_attrs=attrs
            )
        )
        retry = [t for t in self._ours() if t.user_attrs.get("retry_of") == number]
        self.numbers[key] = retry[-1].number

    def fail_orphans(self) -> int:
        """Fail our trials still RUNNING after the search (asked, never run): how many."""
        orphans = self._ours(states=(TrialState.RUNNING,))
        for frozen in orphans:
            self._set_attr(frozen.number, "status", ORPHANED)
            self._tell(frozen.number, None, TrialState.FAIL)
        return len(orphans)

    def asked_after_results(self) -> tuple[int, int]:
        """(trials asked after the first result was told, trials run): what the sampler saw."""
        ran = [t for t in self._ours() if t.user_attrs.get("status") not in NOT_COUNTED]
        ends = [t.datetime_complete for t in ran if t.datetime_complete is not None]
        if not ends:
            return 0, len(ran)
        first = min(ends)
        return sum(t.datetime_start is not None and t.datetime_start > first for t in ran), len(ran)

    def told(self) -> dict[str, dict[str, float]]:
        """key -> point of our trials told COMPLETE or PRUNED (what trials.csv must hold)."""
        done = {t.number: t for t in self._ours((TrialState.COMPLETE, TrialState.PRUNED))}
        return {k: dict(done[n].params) for k, n in self.numbers.items() if n in done}

    def refused(self) -> int:
        """Points the compiler refused (never run): failed trials with status `refused`."""
        failed = self._ours(states=(TrialState.FAIL,))
        return sum(t.user_attrs.get("status") == REFUSED for t in failed)

    def _storage_trial(self, number: int) -> tuple[BaseStorage, int]:
        """The storage's own id of trial `number` (BaseStorage's public look-ups)."""
        _ = self.study  # opens the storage
        assert self._storage is not None
        study_id = self._storage.get_study_id_from_name(STUDY_NAME)
        return self._storage, self._storage.get_trial_id_from_study_id_trial_number(
            study_id, number
        )

    def _finished(self, number: int) -> bool:
        storage, trial_id = self._storage_trial(number)
        return storage.get_trial(trial_id).state.is_finished()

    def _set_attr(self, number: int, key: str, value: Any) -> None:
        storage, trial_id = self._storage_trial(number)
        storage.set_trial_user_attr(trial_id, key, value)

    def _tell(self, number: int, values: list[float] | None, state: TrialState) -> None:
        try:
            self.study.tell(number, values, state=state, skip_if_finished=True)
        except RuntimeError as error:  # GridSampler calls Study.stop once the grid is done,
            if "Study.stop" not in str(error):  # which only an optimize loop allows; the
                raise  # trial is told all the same (Optuna stores it before the sampler hook)


def _finite_or_nan(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan
