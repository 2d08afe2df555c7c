"""A trials.csv row lost after Tune's last snapshot is written again from the trial's own
checkpoint (`search.trials.recover_rows`), for a point's trial and a population's member."""

from __future__ import annotations

from pathlib import Path

from test_study import tiny

from experiment.config import experiment_from_dict
from search.checkpoints import trial_dirname, write_final
from search.members import population_result
from search.plan import plan_search
from search.trials import read_rows, recover_rows


def test_rows_lost_after_the_snapshot_come_back_from_final_yaml(tmp_path: Path) -> None:
    plan = plan_search(experiment_from_dict(tiny("lost")), storage_root=str(tmp_path))
    plan.local_dir.mkdir(parents=True)
    point = {key: 0.5 for key in plan.space.keys}
    metrics = {"nll": 1.4, "mi": 0.7, "step": 200, "status": "ok"}
    one = Path(plan.experiment_path) / trial_dirname("a1") / "checkpoint_000001"
    one.mkdir(parents=True)
    write_final(one, {**metrics, "done": True})
    pop = Path(plan.experiment_path) / trial_dirname("b2") / "checkpoint_000003"
    pop.mkdir(parents=True)
    members = {0: {**metrics, "nll": 1.5}, 1: {**metrics, "status": "pruned", "step": 22}}
    write_final(pop, population_result(members, True, {}))
    told = {"a1": point, "b2#1": point, "c3": point}  # c3: no checkpoint, nothing to derive
    assert sorted(recover_rows(plan, told)) == ["a1", "b2#1"]
    rows = read_rows(plan.trials_csv)
    assert rows["a1"]["status"] == "ok" and float(rows["a1"]["nll"]) == 1.4
    assert rows["b2#1"]["status"] == "pruned" and rows["b2#1"]["step"] == "22"
    assert all(float(rows[k][key]) == 0.5 for k in rows for key in plan.space.keys)
    assert recover_rows(plan, told) == []  # already there: nothing written
