"""`FamilySearcher` against the contract of a Tune `Searcher`, in our own words.

The points Ray's own searcher tests check of every searcher (suggest and complete, errors,
NaN results, the end of the budget, save and restore, through `ConcurrencyLimiter` and Tune's
search generator), here driven by hand against the real study actor; and what issue 18 adds:
a blank `FamilySearcher()` restores from a saved state (Ray's pattern), a resumed study takes
its paths from this driver and its progress from the saved state (a moved folder), the study
names its metrics for Optuna's clients.
"""

from __future__ import annotations

import logging
import math
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import ray
from ray.tune.search import ConcurrencyLimiter, Searcher
from test_study import tiny, trials

from experiment.config import experiment_from_dict
from search.journal import owns
from search.plan import plan_search
from search.relocate import resumed
from search.searcher import FamilySearcher, Generator, host_name, start_host
from search.tune import Progress
from search.tune import _study as study_of  # the driver's own construction

BUDGET = 3
COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def plan_in(root: Path, resume: bool = False):
    data = tiny("contract", search={"num_samples": BUDGET, "sampler": "random"})
    return plan_search(experiment_from_dict(data), storage_root=str(root), resume=resume)


@pytest.fixture
def host(local_ray: None, tmp_path: Path) -> Iterator[tuple]:
    plan = plan_in(tmp_path)
    actor = start_host(study_of(plan))
    yield plan, actor
    ray.kill(actor)


def test_suggest_then_complete_tells_optuna_each_outcome(host: tuple) -> None:
    plan, _ = host
    searcher = FamilySearcher(plan.metrics, plan.modes)
    configs = [searcher.suggest(f"t{i}") for i in range(BUDGET)]
    assert all(set(c) == set(plan.space.keys) for c in configs)
    assert len({tuple(sorted(c.items())) for c in configs}) == BUDGET  # each its own point
    assert searcher.suggest("t9") == Searcher.FINISHED  # the budget is spent
    searcher.on_trial_complete("t0", {"nll": 1.5, "mi": 0.25, "status": "ok"})
    searcher.on_trial_complete("t1", {"nll": math.nan, "mi": 0.25, "status": "ok"})
    searcher.on_trial_complete("t2", None, error=True)
    states = {t.user_attrs["tune_trial_id"]: t for t in trials(plan.study)}
    assert states["t0"].state == COMPLETE and states["t0"].values == [1.5, 0.25]
    assert states["t1"].state == FAIL  # never NaN values in the study
    assert states["t2"].state == FAIL and states["t2"].user_attrs["status"] == "error"


def test_the_concurrency_limiter_and_tunes_generator_hold_the_contract(host: tuple) -> None:
    plan, _ = host
    limited = ConcurrencyLimiter(FamilySearcher(plan.metrics, plan.modes), max_concurrent=1)
    assert limited.suggest("a") is not None
    assert limited.suggest("b") is None  # one live trial: wait
    limited.on_trial_complete("a", {"nll": 1.0, "mi": 0.5, "status": "ok"})
    assert limited.suggest("b") is not None
    generator = Generator(limited)
    assert generator.searcher is limited and generator.metric == limited.metric


def test_a_trial_tune_lost_in_a_kill_frees_its_slot_and_its_members(host: tuple) -> None:
    """The race CI hit: a driver killed after its searcher's state recorded population "p1"
    but before Tune's trials did. Restored as saved, the limiter held "p1" live for ever and
    the resumed Tune waited for a trial the searcher never gave. `settle` with the trials Tune
    holds frees the slot and gives p1's members back to the budget."""
    plan, _ = host
    family = FamilySearcher(plan.metrics, plan.modes, population=2)
    generator = Generator(ConcurrencyLimiter(family, max_concurrent=1))
    limiter = generator.searcher
    assert len(limiter.suggest("p0")["members"]) == 2
    limiter.on_trial_complete("p0", {"members/0/nll": 1.0, "members/0/mi": 0.5})
    assert len(limiter.suggest("p1")["members"]) == 1  # the last of the budget of 3
    # what a restore from those states gives: p1 live in the limiter, Tune holds nothing live
    assert limiter.suggest("p2") is None  # without settle: for ever
    generator.settle(set())
    again = limiter.suggest("p2")
    assert again is not None and len(again["members"]) == 1  # p1's member is asked again
    lost = [t for t in trials(plan.study) if t.user_attrs["tune_trial_id"] == "p1"]
    assert [(t.state, t.user_attrs["status"]) for t in lost] == [(FAIL, "orphaned")]
    generator.settle({"p2", "p3"})  # the other way: trials Tune resumes count against the limit
    assert limiter.live_trials == {"p2", "p3"} and limiter.suggest("p4") is None


def test_a_trial_tune_resumed_that_the_saved_state_lacks_keeps_its_members(
    host: tuple, tmp_path: Path
) -> None:
    """The other race (CI, a fixed population): the searcher's state was saved before
    population "p1" was asked, Tune's after. Restored, the study opened on p1's end and
    orphaned its running member as asked after its state, then asked its budget again while
    p1 trained on: 4 rows for a budget of 3. `settle` leaves p1's members to p1."""
    plan, actor = host
    family = FamilySearcher(plan.metrics, plan.modes, population=2)
    limiter = ConcurrencyLimiter(family, max_concurrent=1)
    assert len(limiter.suggest("p0")["members"]) == 2
    done = {"members/0/nll": 1.0, "members/0/mi": 0.5, "members/1/nll": 1.1, "members/1/mi": 0.4}
    limiter.on_trial_complete("p0", done)
    stale = ray.get(actor.get.remote())  # the searcher's state, saved before p1
    assert len(limiter.suggest("p1")["members"]) == 1
    ray.kill(actor)  # a new driver: its host begins from the stale state
    resumed_host = start_host(study_of(plan_in(tmp_path, resume=True)))
    ray.get(resumed_host.put.remote(stale))
    generator = Generator(ConcurrencyLimiter(FamilySearcher(plan.metrics, plan.modes, 2), 1))
    generator.searcher.live_trials = {"p1"}  # the limiter's state (its own file) knew p1
    generator.settle({"p1"})  # Tune resumed p1
    restored = generator.searcher
    restored.on_trial_complete("p1", {"members/0/nll": 1.2, "members/0/mi": 0.5})
    p1 = [t for t in trials(plan.study) if t.user_attrs["tune_trial_id"] == "p1"]
    assert [(t.state, t.values) for t in p1] == [(COMPLETE, [1.2, 0.5])]
    assert restored.suggest("p2") == Searcher.FINISHED  # the budget of 3, run exactly once
    ray.kill(resumed_host)


def test_a_resume_that_tune_starts_anew_asks_again_what_was_running(
    local_ray: None, tmp_path: Path
) -> None:
    """The full-disk case: Tune's own state was cut short, so the resumed Tune starts again
    and none of the earlier trials resumes. The saved searcher state still counted their
    running members: the search ended with 1 row of 5. `start_host(..., anew=True)` keeps the
    sampler and counts finished members only."""
    plan = plan_in(tmp_path)
    actor = start_host(study_of(plan))
    searcher = FamilySearcher(plan.metrics, plan.modes)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"nll": 1.0, "mi": 0.5, "status": "ok"})
    searcher.suggest("t1")  # running when the driver stopped
    saved = Path(plan.experiment_path) / Searcher.CKPT_FILE_TMPL.format("before")
    saved.parent.mkdir(parents=True, exist_ok=True)
    searcher.save(str(saved))
    ray.kill(actor)
    anew = start_host(study_of(plan_in(tmp_path, resume=True)), plan.experiment_path, anew=True)
    again = FamilySearcher(plan.metrics, plan.modes)
    asked = [again.suggest(f"u{i}") for i in range(3)]
    assert [isinstance(a, dict) for a in asked[:2]] == [True, True]  # 1 ran: 2 are asked
    assert asked[2] == Searcher.FINISHED
    t1 = [t for t in trials(plan.study) if t.user_attrs["tune_trial_id"] == "t1"]
    assert [(t.state, t.user_attrs["status"]) for t in t1] == [(FAIL, "orphaned")]
    ray.kill(anew)


def test_the_first_step_after_a_restore_settles_the_limiter_on_tunes_unfinished_trials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Restored:
        live: set[str] | None = None

        def settle(self, live: set[str]) -> None:
            self.live = live

    class Trial:
        def __init__(self, trial_id: str, finished: bool) -> None:
            self.trial_id, self.finished = trial_id, finished

        def is_finished(self) -> bool:
            return self.finished

    restored = Restored()
    monkeypatch.setattr(Generator, "restored", restored)
    held = [Trial("a", True), Trial("b", False), Trial("c", False)]
    Progress().on_step_begin(iteration=0, trials=held)
    assert restored.live == {"b", "c"} and Generator.restored is None
    Progress().on_step_begin(iteration=1, trials=[])  # later steps: nothing to settle
    assert restored.live == {"b", "c"}


def test_a_blank_searcher_restores_what_was_saved(host: tuple, tmp_path: Path) -> None:
    plan, actor = host
    searcher = FamilySearcher(plan.metrics, plan.modes, population=2)
    members = searcher.suggest("p0")
    assert len(members["members"]) == 2
    saved = tmp_path / "searcher-state.pkl"
    searcher.save(str(saved))
    ray.kill(actor)  # a new driver: no host yet
    with pytest.raises(ValueError):
        ray.get_actor(host_name())
    blank = FamilySearcher()
    blank.restore(str(saved))
    assert (blank.metrics, blank.modes, blank.population) == (plan.metrics, plan.modes, 2)
    assert blank.metric == list(plan.metrics) and blank.mode == list(plan.modes)
    assert len(blank.suggest("p1")["members"]) == 1  # 2 of the budget of 3 are held
    assert blank.suggest("p2") == Searcher.FINISHED
    blank.on_trial_complete("p0", {"members/0/nll": 1.0, "members/0/mi": 0.5})
    told = {t.user_attrs.get("member"): t for t in trials(plan.study) if t.state == COMPLETE}
    assert told[0].values == [1.0, 0.5]
    ray.kill(ray.get_actor(host_name()))


def test_a_moved_folder_resumes_its_study_from_the_saved_state(tmp_path: Path) -> None:
    """No Ray: the saved study names the old folder; the resumed one this driver's."""
    old = plan_in(tmp_path / "old")
    study = study_of(old)
    first = study.ask("t0")
    study.tell("t0", "ok", {"nll": 1.0, "mi": 0.5})
    study.ask("t1")  # running when the driver stopped
    saved = pickle.loads(pickle.dumps(study))
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    here = study_of(plan_in(tmp_path / "new", resume=True))  # what the resumed driver builds
    again = resumed(saved, here)
    assert again.study_url == here.study_url != saved.study_url
    assert again.numbers == saved.numbers and not again.exhausted()
    assert [t.params for t in again.study.get_trials() if t.state == COMPLETE] == [first]
    again.ask("t2")
    assert again.exhausted()  # the budget counts the moved trials: never started again
    assert not (tmp_path / "old").exists()  # nothing opened at the old path


def test_owners_are_folder_names_and_old_absolute_owners_still_count() -> None:
    assert owns("quick", "quick") and owns("quick", "/data/results/quick")
    assert not owns("quick", "quick-2") and not owns("quick", "/data/quick/quick-2")
    assert not owns("quick", None)


def test_the_study_names_its_metrics_for_optunas_clients(tmp_path: Path) -> None:
    plan = plan_in(tmp_path)
    study = study_of(plan)
    study.ask("t0")
    loaded = optuna.load_study(study_name="search", storage=study._storage)
    assert loaded.metric_names == list(plan.metrics)
    attrs = loaded.user_attrs
    assert attrs["directions"] == {"nll": "minimize", "mi": "maximize"}
    assert attrs["family"] == "InfoAE mmd-vae" and attrs["mi_bound"].startswith("mi: ")


def test_rolling_trials_that_fail_before_any_member_stop_the_search(
    host: tuple, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rolling trial that raises before it asks a member (say, a sampler that cannot be
    built) would otherwise be replaced by a new one without end: three in a row stop it."""
    plan, _ = host
    searcher = FamilySearcher(plan.metrics, plan.modes, population=2, rolling=True)
    for i in range(3):
        assert searcher.suggest(f"r{i}") == {"slots": 2}
        searcher.on_trial_complete(f"r{i}", None, error=True)
    assert searcher.suggest("r3") == Searcher.FINISHED
    assert "3 rolling trials in a row failed before any member trained" in capsys.readouterr().out
