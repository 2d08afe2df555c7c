"""The trainer's unit is a population: K members trained as one batched model give, member by
member, the metrics of their separate runs (a plain run is a population of one).

Tolerances. The same code path with the same inputs is bit-exact: a member beside a poisoned
member against the same member beside a clean one (its slice of every batched matmul reads only
its own weights and data). A member alone (K = 1) against the same member among K > 1 runs
`baddbmm` over a different number of matrices, which a BLAS may split and sum differently: after
50 steps their metrics stay within METRIC_TOLERANCE, relative, on every CPU seen. What is exact
by construction, the draw order of every stream, is asserted exactly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_idx_dir

from experiment.config import ConfigError, Experiment, experiment_from_dict
from objectives.estimators import ESTIMATORS
from objectives.record import draw_order
from objectives.stacked import StackedLinear
from training.trainer import Trainer

STEPS = 50
METRIC_TOLERANCE = 1e-5  # relative to max(1, |metric|): image NLLs are hundreds of nats
IGNORED = {"train_samples_per_s"}  # timing, not a result


def member(
    seed: int = 0, data_dir: Path | None = None, eval_every: int = STEPS, **objective: Any
) -> Experiment:
    """One member: the quick demo's network (2x64, z 1) on mog, 50 steps, evaluated every
    `eval_every`; on IDX images (`data_dir`) a Bernoulli decoder with z 4. Objective: InfoVAE
    by default. Evaluation on 64 test and 64 training points keeps the quadrature cheap."""
    data: dict[str, Any] = {
        "name": "population",
        "seed": seed,
        "dataset": {"name": "mog", "train_size": 512, "test_size": 64},
        "model": {"hidden": 64, "layers": 2, "z_dim": 1},
        "objective": objective or {"preset": "infovae", "beta": 0.5, "lambda": 10.0},
        "train": {
            "steps": STEPS,
            "eval_every": eval_every,
            "batch_size": 32,
            "iw_samples": 8,
            "nll_train_size": 64,
            "threads": 1,  # a second thread only waits on a shared machine
        },
    }
    if data_dir is not None:
        data["dataset"] = {"name": "mnist", "data_dir": str(data_dir), "test_size": 32}
        data["model"]["z_dim"] = 4
    return experiment_from_dict(data)


def alone(experiment: Experiment) -> list[dict[str, Any]]:
    """The member's separate run: a population of one."""
    return [metrics for (metrics,) in Trainer(experiment).run()]


def population_runs(experiments: list[Experiment], **poison: int) -> list[list[dict[str, Any]]]:
    """Each member's metrics at each evaluation; `poison=k` sets member k's first weight to NaN."""
    trainer = Trainer(experiments)
    if "poison" in poison:
        with torch.no_grad():
            trainer.model.encoder.net[0].weight_t[poison["poison"]].fill_(math.nan)
    rounds = list(trainer.run())
    return [[metrics[k] for metrics in rounds] for k in range(len(experiments))]


def assert_matches(experiments: list[Experiment], tolerance: float = METRIC_TOLERANCE) -> None:
    """Every member of one population against its separate run, at every evaluation."""
    runs = population_runs(experiments)
    for experiment, run in zip(experiments, runs, strict=True):
        separate = alone(experiment)
        assert len(separate) == len(run)
        for a, b in zip(separate, run, strict=True):
            worst = differences(a, b)
            assert max(worst.values()) <= tolerance, worst
        assert run[-1]["status"] == "ok" and run[-1]["done"]


def differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """|a - b| / max(1, |a|) per numeric metric (0 where both are NaN); other values equal."""
    assert a.keys() == b.keys()
    out = {}
    for key in a.keys() - IGNORED:
        if isinstance(a[key], float) and isinstance(b[key], float):
            both_nan = math.isnan(a[key]) and math.isnan(b[key])
            out[key] = 0.0 if both_nan else abs(a[key] - b[key]) / max(1.0, abs(a[key]))
        else:
            assert a[key] == b[key], key
    return out


@pytest.mark.parametrize("data", ["mog", "idx"])
def test_each_member_matches_its_separate_run(data: str, tmp_path: Path) -> None:
    data_dir = write_idx_dir(tmp_path, train=64, test=32) if data == "idx" else None
    objectives = [
        {"preset": "infovae", "beta": 0.3, "lambda": 1.0},
        {"preset": "infovae", "beta": 1.0, "lambda": 100.0},
        {"preset": "infovae", "beta": 1.7, "lambda": 1000.0},
        {"preset": "infovae", "beta": 0.8, "lambda": 5.0},
    ]
    if data == "idx":  # the Bernoulli decoder: two members suffice, and keep the test short
        objectives = objectives[:2]
    experiments = [member(10 + k, data_dir, eval_every=25, **o) for k, o in enumerate(objectives)]
    finals = [run[-1]["nll"] for run in population_runs(experiments)]
    assert len(set(finals)) == len(experiments), "the members should differ (multipliers, seeds)"
    assert_matches(experiments)


def test_image_members_share_one_training_tensor_and_one_gather(tmp_path: Path) -> None:
    """Members of one image data set hold one copy of its training split (each still has its
    own seed's test binarisation), and their batches come from one index op over it; the
    mixture's members, drawn from their own seeds, gather from one concatenation."""
    data_dir = write_idx_dir(tmp_path, train=64, test=32)
    trainer = Trainer([member(seed, data_dir) for seed in (1, 2, 3)])
    first = trainer.members[0].dataset
    assert all(m.dataset.train is first.train for m in trainer.members)
    assert not torch.equal(first.test, trainer.members[1].dataset.test)
    trainer.train_steps(1)
    assert trainer.batches is not None and trainer.batches.source is first.train
    assert trainer.batches.offsets is None
    mog = Trainer([member(seed) for seed in (1, 2)])
    assert not torch.equal(mog.members[0].dataset.train, mog.members[1].dataset.train)
    mog.train_steps(1)
    assert mog.batches is not None and mog.batches.offsets is not None


def test_dual_ascent_trains_per_member() -> None:
    """Each member's λ follows its own constraint: members with different slack end with
    different λ, and each matches its separate run."""
    experiments = [
        member(
            40 + k,
            preset="beta-vae",
            beta=1.0,
            mode="lagrangian",
            dual={"slack": {"rate": slack}, "lr": 0.05},
        )
        for k, slack in enumerate((0.01, 5.0))
    ]
    assert_matches(experiments)
    (tight, loose) = [run[-1]["lambda/rate"] for run in population_runs(experiments)]
    assert tight > 1e-3 and loose == pytest.approx(1e-3), "rate > 0.01 raises λ; rate < 5 not"


def test_the_mi_cap_trains_per_member() -> None:
    """β < 1 rewards information; the cap binds for the capped member only."""
    experiments = [
        member(50, preset="beta-vae", beta=0.3, mi_upper_bound=0.2),
        member(51, preset="beta-vae", beta=0.3),
    ]
    assert_matches(experiments)


def test_an_implicit_encoder_trains_in_a_population() -> None:
    experiments = [member(60 + k, preset="elbo") for k in range(2)]
    experiments = [
        experiment_from_dict(
            e.to_dict() | {"model": e.to_dict()["model"] | {"encoder": "implicit"}}
        )
        for e in experiments
    ]
    assert_matches(experiments)


def test_a_diverged_member_leaves_the_others_unchanged() -> None:
    experiments = [member(seed) for seed in (1, 2, 3)]
    clean = population_runs(experiments)
    poisoned = population_runs(experiments, poison=1)
    for k in (0, 2):
        for a, b in zip(poisoned[k], clean[k], strict=True):
            assert max(differences(a, b).values()) == 0.0, differences(a, b)
        assert poisoned[k][-1]["status"] == "ok"
    final = poisoned[1][-1]
    assert final["status"] == "diverged" and final["diverged_step"] == 1
    assert final["diverged_term"] == "E_q[log p(x|z)]"  # the first term the NaN weight reaches
    assert math.isnan(final["nll"]) and final["done"]


def test_members_that_cannot_share_a_population_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"differ in objective\.kernel"):
        Trainer([member(), member(preset="infovae", kernel="rbf")])
    with pytest.raises(ConfigError, match="differ in model"):
        other = experiment_from_dict(member().to_dict() | {"model": {"hidden": 32, "z_dim": 1}})
        Trainer([member(), other])
    with pytest.raises(ConfigError, match="differ in the loss terms"):
        Trainer([member(), member(preset="elbo")])


def draws(terms: list[str], x_gradient: str = "score-function") -> list[str]:
    return draw_order([ESTIMATORS[t].draws(False, x_gradient) for t in terms])  # type: ignore[arg-type]


def test_draws_follow_each_terms_first_use() -> None:
    assert draws(["E_q[log p(x|z)]", "MMD(q(z)||p(z))"]) == ["z_q", "z_p"]
    assert draws(["E_p[log p(x|z)]", "MMD(q(z)||p(z))"]) == ["z_p", "z_q"]
    assert draws(["E_q[log q(z|x)]", "E_p[log p(z)]"]) == []
    # a divergence on (x, z) asks whether x ~ p(x|z) needs the score function first: z_p first
    assert draws(["JS(q(x,z)||p(x,z))"]) == ["z_p", "z_q", "x_p"]
    assert draws(["JS(q(x,z)||p(x,z))"], "straight-through") == ["z_q", "z_p", "x_p"]
    assert draws(["E_p[log q(z|x)]", "KL(q(z)||p(z))"]) == ["z_p", "x_p", "z_q"]


@pytest.mark.parametrize("out", [3, 12])  # a narrow layer computes its transpose, a wide not
def test_a_stacked_linear_is_its_members_linears(out: int) -> None:
    """Values and gradients against each member's nn.Linear: two kernels, float32 tolerance."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, out) for _ in range(4)]
    x = torch.randn(4, 7, 5, requires_grad=True)  # (K, B, in)
    stacked = StackedLinear(layers)
    assert stacked.narrow == (out < 8)
    y = stacked(x)  # (K, B, out)
    weights = torch.randn_like(y)
    (y * weights).sum().backward()
    for k, layer in enumerate(layers):
        xk = x.detach()[k].clone().requires_grad_()
        yk = layer(xk)
        (yk * weights[k]).sum().backward()
        torch.testing.assert_close(y[k], yk, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(x.grad[k], xk.grad, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(stacked.member_weight(k), layer.weight, rtol=0, atol=0)
        grad_w = stacked.weight.grad[k] if stacked.narrow else stacked.weight_t.grad[k].t()
        torch.testing.assert_close(grad_w, layer.weight.grad, rtol=1e-6, atol=1e-6)
        grad_b = stacked.bias.grad[k].view(-1)
        torch.testing.assert_close(grad_b, layer.bias.grad, rtol=1e-6, atol=1e-6)
