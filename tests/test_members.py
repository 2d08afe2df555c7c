"""search/members.py: the one codec of a trial's result as members, and the status words.

A population trial's result goes through Tune before the searcher sees it (flattened to
`members/0/nll` keys) and reaches result.json nested; both must decode to the members the
trial reported, with the trial's shared fields, in the order of the population.
"""

from __future__ import annotations

import math

import pytest
from ray.tune.utils import flatten_dict

from experiment import status
from search.members import MEMBERS, Member, decode, final, member_key, parse_key, population_result

REPORTED = [  # what a population trial's members report (search.trial)
    {"nll": 1.25, "mi": 0.5, "step": 40, "status": "ok", "lambda/MMD(q(z)||p(z))": 9.5},
    {"nll": math.inf, "step": 20, "status": "diverged", "diverged_term": "E_q[log p(x|z)]"},
    {"nll": 1.5, "mi": 0.25, "step": 20, "status": "running", "restored_from_step": 20},
]
EXTRA = {"node_id": "n1", "gpu_ids": ""}
TUNE_FIELDS = {"time_total_s": 3.5, "training_iteration": 2, "trial_id": "abc_00001"}


def tune_result(done: bool) -> dict:
    """What Tune records of one report: the trial's result and Tune's own fields."""
    return {**population_result(dict(enumerate(REPORTED)), done, EXTRA), **TUNE_FIELDS}


def expected_members() -> list[Member]:
    shared = {**EXTRA, **TUNE_FIELDS, "done": True}
    return [
        Member(k, {**shared, **{n: v for n, v in m.items() if n != "status"}}, m["status"])
        for k, m in enumerate(REPORTED)
    ]


def test_a_population_result_round_trips_through_tunes_flattening() -> None:
    nested = tune_result(done=True)
    flat = flatten_dict(nested)  # what Tune hands a searcher's on_trial_complete
    assert "members/0/lambda/MMD(q(z)||p(z))" in flat and MEMBERS not in flat
    assert decode(flat) == decode(nested) == expected_members()


def test_the_trial_reports_its_best_member_as_its_own_metrics_and_its_furthest_step() -> None:
    result = population_result(dict(enumerate(REPORTED)), False, EXTRA)
    assert (result["nll"], result["mi"], result["best_member"]) == (1.25, 0.5, 0)
    assert result["status"] == "ok" and result["step"] == 40  # the best member's status
    assert "done" not in result and result["node_id"] == "n1"
    assert list(result[MEMBERS]) == ["0", "1", "2"]  # string keys: Tune flattens a mapping
    by_mi = population_result(dict(enumerate(REPORTED)), False, EXTRA, ("mi", "max"))
    assert by_mi["best_member"] == 0 and by_mi["nll"] == 1.25  # mode max: the largest mi
    by_mi = population_result(dict(enumerate(REPORTED)), False, EXTRA, ("mi", "min"))
    assert by_mi["best_member"] == 2 and by_mi["nll"] == 1.5
    earlier = (7, {"nll": 1.0, "mi": 0.1, "status": "ok", "objective.params.beta": 2.0})
    remembered = population_result(dict(enumerate(REPORTED)), True, EXTRA, best=earlier)
    assert remembered["best_member"] == 7 and remembered["nll"] == 1.0
    assert remembered["best_config"] == {"objective.params.beta": 2.0}
    assert decode(flatten_dict(remembered)) == decode(remembered)  # never a member's field
    assert all("best_config" not in m.metrics for m in decode(flatten_dict(remembered)))


def test_no_finite_value_leaves_the_trials_own_metrics_nan() -> None:
    diverged = {0: {"nll": math.inf, "step": 3, "status": "diverged"}}
    result = population_result(diverged, False, EXTRA)
    assert math.isnan(result["nll"]) and result["status"] == status.POPULATION


def test_final_statuses_of_an_ended_trial() -> None:
    ended = final(flatten_dict(tune_result(done=True)))
    assert [m.status for m in ended] == ["ok", "diverged", "stopped"]  # running: stopped
    raised = final(flatten_dict(tune_result(done=False)), error=True)
    assert [m.status for m in raised] == ["error"] * 3


def test_members_a_result_lacks_come_from_the_population_size() -> None:
    """A population trial that raised before its first report: each member is recorded."""
    members = final({"time_total_s": 1.0}, size=2, error=True)
    assert [(m.index, m.status, m.metrics) for m in members] == [
        (0, "error", {"time_total_s": 1.0}),
        (1, "error", {"time_total_s": 1.0}),
    ]


def test_a_points_result_is_one_member_named_by_the_trial_id() -> None:
    (point,) = decode({"nll": 1.5, "status": "ok", "step": 40})
    assert point == Member(None, {"nll": 1.5, "step": 40}, "ok")
    assert final({})[0].status == status.STOPPED  # ended before it reported
    assert member_key("abc_00001", None) == "abc_00001"


@pytest.mark.parametrize("member", [None, 0, 7, 12])
def test_member_keys_parse_back(member: int | None) -> None:
    key = member_key("abc_00001", member)
    assert parse_key(key) == ("abc_00001", member)


def test_the_status_words_are_one_vocabulary() -> None:
    words = [status.RUNNING, status.OK, status.DIVERGED, status.REFUSED, status.ERROR]
    words += [status.STOPPED, status.ORPHANED, status.POPULATION, status.UNFINISHED]
    assert len(set(words)) == len(words)
    assert set(status.TOLD_AS_COMPLETE) <= set(status.ROW_STATUSES)
    assert not set(status.NOT_COUNTED) & set(status.TOLD_AS_COMPLETE)
    assert status.RUNNING not in status.ROW_STATUSES  # a row is of an ended trial
