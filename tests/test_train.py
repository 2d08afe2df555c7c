"""Contract tests of search/train.py, parametrised over every preset of the family.

Every named model trains through the same loop: finite losses, gradients reaching exactly the
parameter groups its tractable form moves, exact resume, divergence reported rather than raised.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import write_idx_dir

from experiment.config import METRICS, ConfigError, Experiment, experiment_from_dict
from objectives.estimators import ESTIMATORS, Estimator, expected_gradient_groups
from objectives.presets import PRESETS
from run_search import main_train
from training.data import BatchStream
from training.members import Member, load_experiment_dataset
from training.run import train
from training.runtime import machine_threads
from training.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("INFOAE_MNIST_DIR", REPO_ROOT / "../shared/data/mnist-subset-10k"))


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MNIST-layout data set: 64 train and 32 test random images."""
    return write_idx_dir(tmp_path_factory.mktemp("idx"), train=64, test=32)


def tiny(data_dir: Path | None = None, **sections: Any) -> Experiment:
    """A small, fast experiment on mog (or on the IDX files in `data_dir`): hidden 16,
    batch 32, 200 steps, CPU; `sections` update the named sections (`objective` replaces)."""
    images = data_dir is not None
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "dataset": {"name": "mog", "train_size": 256, "test_size": 32},
        "model": {"hidden": 16, "discriminator_hidden": 16, "z_dim": 4 if images else 1},
        "objective": {"preset": "elbo"},
        "train": {"steps": 200, "batch_size": 32, "eval_every": 100, "iw_samples": 8},
    }
    data["train"]["device"] = "cpu"
    if images:
        data["dataset"] = {"name": "mnist", "data_dir": str(data_dir), "test_size": 32}
    for key, value in sections.items():
        if isinstance(value, dict) and key != "objective":
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return experiment_from_dict(data)


def all_metrics_finite(metrics: dict[str, Any]) -> bool:
    """Every metric finite; `mi_ba` needs the data entropy, so only on mog (NaN on images)."""
    on_mog = metrics["nll"] < 100  # 1-D mixture: about 1.4 nats; images: hundreds
    return all(
        math.isfinite(metrics[m]) for m in (*METRICS, "mi_cap") if on_mog or m != "mi_ba"
    ) and (on_mog or math.isnan(metrics["mi_ba"]))


def only(trainer: Trainer) -> Member:
    """The one member of a plain run (a population of one)."""
    (member,) = trainer.members
    return member


def coefficient(trainer: Trainer, term: str) -> float:
    return float(trainer.loss.coefficients[0, trainer.loss.terms.index(term)])


def final(trainer: Trainer) -> dict[str, Any]:
    """The last metrics of a plain run."""
    return [metrics for (metrics,) in trainer.run()][-1]


def gradient_groups(trainer: Trainer, loss: torch.Tensor) -> set[str]:
    """The model groups ("p", "q") in which `loss` has a non-zero gradient."""
    groups = trainer.model.parameter_groups()
    params = [p for ps in groups.values() for p in ps]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    moved, i = set(), 0
    for name, ps in groups.items():
        if any(g is not None and bool(g.abs().sum() > 0) for g in grads[i : i + len(ps)]):
            moved.add(name)
        i += len(ps)
    return moved


# --------------------------------------------------------------------------- the family


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("data", ["mog", "idx"])
def test_every_preset_trains_through_the_same_loop(preset: str, data: str, idx_dir: Path) -> None:
    experiment = tiny(data_dir=idx_dir if data == "idx" else None, objective={"preset": preset})
    trainer = Trainer(experiment, threads=1)
    trainer.train_steps(200)
    member = only(trainer)
    assert (member.status, member.step) == ("running", 200), member.diverged

    form = experiment.compiled.coefficients()
    x = next(member.batches)[None]  # (1, B, D)
    out = trainer.loss(x, [torch.Generator().manual_seed(0)])
    values = (*out.losses.values(), *out.breakdown.values())
    assert all(bool(torch.isfinite(v).all()) and v.shape == (1,) for v in values)
    assert set(out.breakdown) >= set(form)
    assert gradient_groups(trainer, out.losses["model"].sum()) == expected_gradient_groups(form)
    for group, loss in out.losses.items():  # each discriminator learns from its own loss
        if group != "model":
            params = trainer.loss.parameter_groups()[group]
            grads = torch.autograd.grad(loss.sum(), params, retain_graph=True)
            assert any(bool(g.abs().sum() > 0) for g in grads), group

    (metrics,) = trainer.evaluate()
    assert all_metrics_finite(metrics), metrics
    assert metrics["mi"] <= metrics["mi_cap"] == pytest.approx(math.log(32))


def test_every_preset_is_covered() -> None:
    assert len(PRESETS) >= 10  # the registry that parametrises the family-wide test


# --------------------------------------------------------------------------- loop details


def test_batch_stream_resumes_from_its_state_with_the_same_draws(idx_dir: Path) -> None:
    dataset = load_experiment_dataset(tiny(data_dir=idx_dir))
    stream = BatchStream(dataset, 24, torch.Generator().manual_seed(5))
    list(islice(stream, 3))
    state = stream.state_dict()
    expected = list(islice(stream, 5))  # crosses an epoch boundary (40 training rows)
    resumed = BatchStream(dataset, 24, torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    for mine, reference in zip(islice(resumed, 5), expected, strict=True):
        torch.testing.assert_close(mine, reference, rtol=0, atol=0)


def test_threads_are_what_the_trial_was_granted_while_it_works_only() -> None:
    before = torch.get_num_threads()
    granted = 1 if before != 1 else 2
    trainer = Trainer(tiny(), threads=granted)
    seen: list[int] = []
    original = trainer.loss.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    trainer.loss.forward = spy
    trainer.train_steps(2)
    assert seen == [granted, granted]
    assert torch.get_num_threads() == before  # restored for whatever runs next in the process
    assert Trainer(tiny(train={"threads": 3})).threads == 3


def test_train_outside_ray_uses_the_machines_cores_by_default() -> None:
    assert Trainer(tiny()).threads == machine_threads()


def test_a_trainer_leaves_no_global_state_behind() -> None:
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    trainer = Trainer(tiny(seed=3))
    trainer.train_steps(3)
    trainer.evaluate()
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    torch.manual_seed(12345)  # whatever the process's global stream holds,
    first = Trainer(tiny(seed=3)).model.parameters()
    second = Trainer(tiny(seed=3)).model.parameters()  # the seed alone decides the network
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_is_deterministic() -> None:
    first, second = Trainer(tiny()), Trainer(tiny())
    first.train_steps(30)
    second.train_steps(30)
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("preset", ["elbo", "aae", "mmd-vae"])
def test_bf16_autocast_trains_and_keeps_parameters_in_fp32(preset: str) -> None:
    """train.precision: bf16 autocasts the forward pass (CPU autocast here, tensor cores on
    a GPU); parameters and the optimiser stay fp32 and the run learns like the fp32 one."""
    fp32 = Trainer(tiny(objective={"preset": preset}))
    bf16 = Trainer(tiny(objective={"preset": preset}, train={"precision": "bf16"}))
    for trainer in (fp32, bf16):
        trainer.train_steps(200)
        assert only(trainer).status == "running"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    x = next(only(bf16).batches)[None]
    with bf16._autocast():
        mu = bf16.model.posterior(x).mean
    with fp32._autocast():
        mu32 = fp32.model.posterior(x).mean
    assert (mu.dtype, mu32.dtype) == (torch.bfloat16, torch.float32)
    nll32, nll16 = fp32.evaluate()[0]["nll"], bf16.evaluate()[0]["nll"]
    assert math.isfinite(nll16) and abs(nll16 - nll32) < 0.1, (nll32, nll16)


def test_run_yields_each_evaluation_and_a_final_dict() -> None:
    results = [metrics for (metrics,) in Trainer(tiny(train={"steps": 250})).run()]
    assert [r["step"] for r in results] == [100, 200, 250]
    assert [r.get("done", False) for r in results] == [False, False, True]
    assert [r["status"] for r in results] == ["running", "running", "ok"]
    assert all(all_metrics_finite(r) and r["train_samples_per_s"] > 0 for r in results)


def compare_trainers(a: Trainer, b: Trainer) -> None:
    assert only(a).step == only(b).step
    for (name, x), (_, y) in zip(
        [*a.model.state_dict().items(), *a.loss.state_dict().items()],
        [*b.model.state_dict().items(), *b.loss.state_dict().items()],
        strict=True,
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    (metrics_a,), (metrics_b,) = a.evaluate(), b.evaluate()
    for key in metrics_a:
        if key != "train_samples_per_s":  # NaN-aware: mi_ba is NaN on images
            assert metrics_a[key] == metrics_b[key] or (
                math.isnan(metrics_a[key]) and math.isnan(metrics_b[key])
            ), key


@pytest.mark.parametrize(
    "setting",
    [
        {"objective": {"preset": "aae"}},  # a discriminator and its optimiser
        {
            "objective": {
                "preset": "elbo",
                "mode": "lagrangian",
                "dual": {"slack": {"KL(q(z)||p(z))": 0.01}, "lr": 0.05},
            }
        },
        {"idx": True},  # Bernoulli data: the binarisation stream
    ],
    ids=["aae", "dual-ascent", "bernoulli"],
)
def test_resume_continues_exactly_as_an_uninterrupted_run(
    setting: dict[str, Any], idx_dir: Path, tmp_path: Path
) -> None:
    setting = dict(setting)
    experiment = tiny(data_dir=idx_dir if setting.pop("idx", False) else None, **setting)
    straight = Trainer(experiment)
    straight.train_steps(60)

    interrupted = Trainer(experiment)
    interrupted.train_steps(30)
    interrupted.evaluate()  # evaluation draws from its own generator, not the training ones
    interrupted.save_checkpoint(tmp_path)
    resumed = Trainer(experiment)
    resumed.load_checkpoint(tmp_path)
    resumed.train_steps(30)
    compare_trainers(straight, resumed)
    if resumed.dual is not None:
        assert torch.equal(resumed.dual.lambdas, straight.dual.lambdas)


# --------------------------------------------------------------------------- divergence


def test_a_non_finite_term_stops_training_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(tiny(train={"steps": 100}))
    trainer.train_steps(5)
    name = "E_q[log p(z)]"
    broken = Estimator(ESTIMATORS[name].groups, lambda r: r.x.new_full((len(r.x),), math.nan))
    monkeypatch.setitem(ESTIMATORS, name, broken)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_steps(10)
    member = only(trainer)
    assert member.status == "diverged"
    assert member.diverged == {"step": 6, "term": name}
    assert member.step == 5  # the non-finite step is not applied
    for p, q in zip(trainer.model.parameters(), before, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)

    results = [metrics for (metrics,) in trainer.run()]
    assert len(results) == 1
    final = results[0]
    assert final["done"] and final["status"] == "diverged"
    assert (final["diverged_step"], final["diverged_term"]) == (6, name)
    assert all(math.isnan(final[m]) for m in METRICS if m != "train_samples_per_s")


def test_a_huge_learning_rate_diverges_and_is_reported() -> None:
    trainer = Trainer(tiny(train={"lr": 1e30, "steps": 300}))
    last = final(trainer)
    assert last["status"] == "diverged"
    assert 1 <= last["diverged_step"] <= 300
    assert isinstance(last["diverged_term"], str)


# --------------------------------------------------------------------------- dual ascent


def dual_experiment(epsilon: float, **dual: Any) -> Experiment:
    return tiny(
        objective={
            "preset": "elbo",
            "mode": "lagrangian",
            "dual": {"slack": {"KL( q(z) || p(z) )": epsilon}, "lr": 0.1, **dual},
        },
        train={"steps": 100, "eval_every": 100},
    )


def test_dual_ascent_raises_a_violated_constraints_multiplier_within_its_clip() -> None:
    trainer = Trainer(dual_experiment(-10.0, lambda_max=1.5))  # D >= 0 > ε: always violated
    term = "KL(q(z)||p(z))"
    assert trainer.dual.member_lambdas(0) == {term: 1.0}  # the ELBO's own multiplier
    trainer.train_steps(3)
    assert 1.0 < trainer.dual.member_lambdas(0)[term] <= 1.5
    assert final(trainer)[f"lambda/{term}"] == 1.5  # clipped at lambda_max
    # the loss moved with λ: the ELBO plus (λ - 1) KL(q(z)||p(z))
    assert coefficient(trainer, term) == pytest.approx(0.5)
    assert coefficient(trainer, "E_q[log p(x|z)]") == -1.0


def test_dual_ascent_lowers_a_satisfied_constraints_multiplier_to_its_floor() -> None:
    last = final(Trainer(dual_experiment(100.0, lambda_min=0.25)))
    assert last["lambda/KL(q(z)||p(z))"] == 0.25
    assert all_metrics_finite(last)


def test_dual_ascent_on_a_lagrangian_form_objective_starts_from_lambda_min() -> None:
    objective = {
        "lambdas": {"KL(q(x|z)||p(x|z))": 1.0, "KL(q(z)||p(z))": 1.0},
        "mode": "lagrangian",
        "dual": {"slack": {"MMD(p(z)||q(z))": 0.0}, "lr": 1.0, "lambda_min": 0.5},
    }
    trainer = Trainer(tiny(objective=objective))
    term = "MMD(q(z)||p(z))"
    assert trainer.dual.member_lambdas(0) == {term: 0.5}  # not in the Lagrangian: λ_min
    assert coefficient(trainer, term) == 0.5
    trainer.train_steps(5)
    assert trainer.dual.member_lambdas(0)[term] > 0.5 - 1e-6


def test_dual_ascent_refuses_a_term_without_a_tractable_form() -> None:
    objective = {
        "preset": "elbo",
        "mode": "lagrangian",
        "dual": {"slack": {"JS(q(x|z)||p(x|z))": 1.0}},
    }
    with pytest.raises(ConfigError, match="dual.slack"):
        Trainer(tiny(objective=objective))


def test_an_intractable_objective_is_a_config_error_naming_the_residual() -> None:
    objective = {"lambdas": {"KL(q(z)||p(z))": 1.0, "JS(q(x|z)||p(x|z))": 1.0}}
    with pytest.raises(ConfigError, match=r"intractable.*JS\(q\(x\|z\)\|\|p\(x\|z\)\)"):
        Trainer(tiny(objective=objective))


# --------------------------------------------------------------------------- the command line


def write_experiment(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(tiny(**sections).to_dict()))
    return path


def test_main_train_writes_metrics_config_and_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_experiment(tmp_path / "exp.yaml")
    out = tmp_path / "out"
    args = argparse.Namespace(
        experiment=config, overrides=["train.steps=150"], out=out, resume=False
    )
    assert main_train(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["step"] for line in lines] == [100, 150]
    assert lines[-1]["done"] and lines[-1]["status"] == "ok"
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == lines
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert experiment_from_dict(saved).train.steps == 150
    assert (out / "checkpoint" / "trainer.pt").is_file()

    # --resume with more steps continues from the checkpoint at step 150
    args = argparse.Namespace(
        experiment=config, overrides=["train.steps=250"], out=out, resume=True
    )
    assert main_train(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["step"] for line in lines] == [200, 250]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4


def test_main_train_reports_bad_input_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = argparse.Namespace(
        experiment=tmp_path / "nope.yaml", overrides=[], out=tmp_path, resume=False
    )
    assert main_train(missing) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1

    config = write_experiment(tmp_path / "exp.yaml")
    no_data = argparse.Namespace(
        experiment=config,
        overrides=["dataset.name=mnist", f"dataset.data_dir={tmp_path / 'absent'}"],
        out=tmp_path / "out",
        resume=False,
    )
    assert main_train(no_data) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "absent" in err and err.count("\n") == 1


def test_train_returns_the_final_metrics_without_an_output_directory(
    capsys: pytest.CaptureFixture[str],
) -> None:
    final = train(tiny(train={"steps": 20, "eval_every": 20}))
    assert final["done"] and final["step"] == 20
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == 20


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"no MNIST-layout data at {MNIST_DIR}")
def test_elbo_on_real_digits_reports_every_metric() -> None:
    experiment = tiny(
        dataset={"name": "mnist", "data_dir": str(MNIST_DIR), "train_size": 500, "test_size": 100},
        model={"z_dim": 8, "hidden": 64, "activation": "tanh"},
        train={"steps": 100, "eval_every": 100, "batch_size": 50, "iw_samples": 50},
    )
    last = final(Trainer(experiment))
    assert last["status"] == "ok" and all_metrics_finite(last), last
    assert last["nll"] <= -last["elbo"] + 1.0  # the IS bound is no worse than the ELBO
    assert 0 < last["distortion"] < 784 * math.log(2)


def test_resume_from_a_checkpoint_of_another_format_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "checkpoint").mkdir()
    torch.save({"step": 3, "model": {}}, tmp_path / "checkpoint" / "trainer.pt")  # format 1
    with pytest.raises(ConfigError, match="--resume: .* of format 1, this trainer reads format"):
        train(tiny(train={"steps": 2, "eval_every": 2}), tmp_path, resume=True)
