"""Tests for search/spaces.py, space_config.py, feasibility.py and plan.py: the checks
`run_search.py search` makes before Ray starts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_idx_dir

import run_search
from experiment.config import ConfigError, Experiment, experiment_from_dict, load_experiment
from objectives.presets import get_preset
from search import feasibility
from search import tune as search_tune
from search.feasibility import check_compiles, enqueue_presets, grid_points, refusal
from search.plan import mi_bound, plan_search
from search.space_config import parse_space
from search.spaces import FAMILIES, Param

PRESET_PARAMS = {  # a value inside each family's default box, for the experiment's objective
    "beta-vae": {"beta": 1.0},
    "kl-infovae": {"alpha": 0.0, "lambda1": 2.0, "lambda2": 1.0},
    "mmd-vae": {"alpha": 0.0, "lambda": 10.0},
    "infovae": {"beta": 1.0, "lambda": 10.0},
    "kl-infogan": {"lambda1": 1.0, "lambda2": 1.0},
    "infogan": {"lambda1": 1.0},
    "kl-infobigan": {"alpha": 0.0, "lambda1": 1.0, "lambda2": 1.0},
}
INFOVAE_LAGRANGIAN = {"KL(q(x|z)||p(x|z))": 1.0, "KL(q(z)||p(z))": 2.0}


def experiment(space: dict[str, Any], objective: dict[str, Any] | None = None, **extra: Any):
    data = {
        "objective": objective or {"preset": "kl-infovae", **PRESET_PARAMS["kl-infovae"]},
        "space": space,
        **extra,
    }
    return experiment_from_dict(data)


def family_experiment(name: str) -> Experiment:
    family = FAMILIES[name]
    if family.preset is None:
        objective = {"lambdas": INFOVAE_LAGRANGIAN}
    else:
        objective = {"preset": family.preset, **PRESET_PARAMS[family.preset]}
    return experiment({"family": name}, objective)


# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_box_compiles(name: str) -> None:
    """Family-wide contract: the preset exists, λ ranges are log and > 0, the box compiles."""
    family = FAMILIES[name]
    if family.preset is not None:
        assert get_preset(family.preset).name == family.preset
        assert set(family.params) <= set(get_preset(family.preset).params)
    for param in family.params.values():
        assert param.low < param.high
        if param.multiplier:
            assert param.log and param.low > 0
        else:
            assert not param.log  # α and β are linear
    e = family_experiment(name)
    space = parse_space(e)
    assert check_compiles(e, space) >= 2 ** len(space.params)


def test_family_with_overrides() -> None:
    space = parse_space(experiment({"family": "kl-infovae", "lambda1": {"low": 1, "high": 50}}))
    assert space.keys == (
        "objective.params.alpha",
        "objective.params.lambda1",
        "objective.params.lambda2",
    )
    assert space["lambda1"] == Param("objective.params.lambda1", 1.0, 50.0, True, True)
    assert space["alpha"].log is False


def test_command_line_overrides_reach_range_bounds(tmp_path: Path) -> None:
    """`--set space.lambda1.low=3` arrives as a flat key; it overrides that bound alone."""
    path = tmp_path / "e.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "objective": {"preset": "kl-infovae", "alpha": 0.0},
                "space": {
                    "family": "kl-infovae",
                    "lambda1": {"low": 1, "high": 50},
                    "params": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                },
            }
        )
    )
    overrides = ["space.lambda1.low=3", "space.alpha.high=0.5", "space.params.train.lr.high=0.1"]
    space = parse_space(load_experiment(path, overrides))
    assert (space["lambda1"].low, space["lambda1"].high) == (3.0, 50.0)
    assert (space["alpha"].low, space["alpha"].high) == (-1.0, 0.5)
    assert (space["train.lr"].low, space["train.lr"].high, space["train.lr"].log) == (
        1e-4,
        0.1,
        True,
    )


def test_aliases_name_the_same_family() -> None:
    e = experiment({"family": "beta-vae"}, {"preset": "beta-elbo", "beta": 1.0})
    assert parse_space(e).family == "beta-elbo"


def test_explicit_params_beside_a_family() -> None:
    e = experiment(
        {
            "family": "mmd-vae",
            "params": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        },
        {"preset": "mmd-vae", "alpha": 0.0, "lambda": 10.0},
    )
    space = parse_space(e)
    assert space.keys[-1] == "train.lr"
    assert space["train.lr"].log is True


def test_lagrangian_family_searches_chosen_terms() -> None:
    e = experiment(
        {
            "family": "lagrangian",
            "alpha2": {"low": -0.5, "high": 0.5},
            "lambdas": {"KL(q(z) || p(z))": {"low": 1, "high": 100}},
        },
        {"lambdas": INFOVAE_LAGRANGIAN},
    )
    space = parse_space(e)
    # the term keeps the objective's own spelling, so with_values overwrites it, not adds it
    assert space.keys == ("objective.alpha2", "objective.lambdas.KL(q(z)||p(z))")
    assert space["KL(q(z)||p(z))"].log and space["KL(q(z)||p(z))"].multiplier
    point = e.with_values({"objective.lambdas.KL(q(z)||p(z))": 7.0})
    assert dict(point.objective.lambdas) == {"KL(q(x|z)||p(x|z))": 1.0, "KL(q(z)||p(z))": 7.0}


def test_lagrangian_family_default_is_alpha2_and_every_lambda() -> None:
    space = parse_space(experiment({"family": "lagrangian"}, {"lambdas": INFOVAE_LAGRANGIAN}))
    assert space.keys == (
        "objective.alpha2",
        "objective.lambdas.KL(q(x|z)||p(x|z))",
        "objective.lambdas.KL(q(z)||p(z))",
    )


def test_explicit_lambda_key_is_log_and_a_multiplier() -> None:
    e = experiment(
        {"params": {"objective.lambdas.KL(q(z)||p(z))": {"low": 1, "high": 10}}},
        {"lambdas": INFOVAE_LAGRANGIAN},
    )
    param = parse_space(e).params[0]
    assert param.log and param.multiplier and param.name == "KL(q(z)||p(z))"


def test_grid_points_cover_corners_and_middle() -> None:
    space = parse_space(experiment({"family": "kl-infovae"}))
    points = list(grid_points(space))
    assert len(points) == 27
    lambda1 = {p["objective.params.lambda1"] for p in points}
    assert min(lambda1) == 0.5 and max(lambda1) == 5000.0
    assert any(math.isclose(v, math.sqrt(0.5 * 5000.0)) for v in lambda1)  # geometric middle


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("space", "objective", "message"),
    [
        ({"family": "nope"}, None, "space.family: unknown family 'nope'"),
        ({"family": "kl-infovae", "gamma": {}}, None, "space.gamma: family kl-infovae has no"),
        (
            {"family": "kl-infovae", "alpha": {"low": 1, "high": 1}},
            None,
            "space.alpha: low (1) must be < high (1)",
        ),
        (
            {"family": "kl-infovae", "lambda1": {"low": -1, "high": 10}},
            None,
            "space.lambda1: negative λ range [-1, 10]",
        ),
        (
            {"family": "kl-infovae", "lambda2": {"low": 0, "high": 10}},
            None,
            "space.lambda2: λ range [0, 10] starts at 0",
        ),
        (
            {"params": {"objective.lambdas.KL(q(z)||p(z))": {"low": -5, "high": 1}}},
            {"lambdas": INFOVAE_LAGRANGIAN},
            "negative λ range [-5, 1]",
        ),
        (
            {"params": {"train.lr": {"low": 0, "high": 1, "log": True}}},
            None,
            "space.params.train.lr: a log range needs low > 0",
        ),
        (
            {"family": "kl-infovae", "alpha": {"low": 0, "high": 1, "step": 2}},
            None,
            "space.alpha.step: unknown key",
        ),
        ({"family": "kl-infovae", "alpha": {"low": "a"}}, None, "space.alpha.low: expected"),
        (
            {"family": "beta-elbo"},
            None,
            "space.family: beta-elbo searches preset 'beta-vae', but the objective is preset",
        ),
        ({"family": "lagrangian"}, None, "space.family: lagrangian searches"),
        ({"alpha": {"low": 0, "high": 1}}, None, "space.alpha: unknown key"),
        (
            {"params": {"train.stepz": {"low": 1, "high": 2}}},
            None,
            "train.stepz: unknown key",
        ),
        (
            {"params": {"train.steps": {"low": 10, "high": 20}}},
            None,
            "train.steps: expected a whole number",
        ),
        (
            {"params": {"objective.params.gamma": {"low": 1, "high": 2}}},
            None,
            "preset 'kl-infovae' has no parameter 'gamma'",
        ),
        ({}, None, "space: the experiment has no `space` section"),
    ],
)
def test_invalid_spaces_name_the_key(space: dict, objective: dict | None, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_space(experiment(space, objective))
    assert message in str(caught.value)


def test_check_compiles_refuses_a_whole_box() -> None:
    """A λ on MMD of a conditional: no toolbox estimates it, wherever λ is."""
    term = "MMD(q(x|z)||p(x|z))"
    e = experiment(
        {"params": {f"objective.lambdas.{term}": {"low": 1, "high": 10}}},
        {"lambdas": INFOVAE_LAGRANGIAN},
    )
    with pytest.raises(ConfigError) as caught:
        check_compiles(e, parse_space(e))
    assert "the whole box (3 of 3 grid points" in str(caught.value)
    assert term in str(caught.value)
    assert term in (refusal(e, {f"objective.lambdas.{term}": 2.0}) or "")


def test_check_compiles_names_the_refused_region(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where only part of the box is refused, the message names the values refused."""

    def refuse_high_alpha(experiment: Experiment, point: dict[str, float]) -> str | None:
        return "intractable: made up" if point["objective.params.alpha"] > 0.5 else None

    monkeypatch.setattr(feasibility, "refusal", refuse_high_alpha)
    e = experiment({"family": "kl-infovae"})
    with pytest.raises(ConfigError) as caught:
        check_compiles(e, parse_space(e))
    text = str(caught.value)
    assert "9 of 27 grid points" in text
    assert "objective.params.alpha = 1: intractable: made up" in text


# --------------------------------------------------------------------------- starting points


def test_enqueue_presets_by_short_name_dotted_key_or_term() -> None:
    e = experiment(
        {"family": "lagrangian", "lambdas": ["KL(q(z)||p(z))"]},
        {"lambdas": INFOVAE_LAGRANGIAN},
        search={
            "enqueue_presets": [
                {"KL(q(z) || p(z))": 2.0},
                {"objective.lambdas.KL(q(z)||p(z))": 5000.0},
            ]
        },
    )
    points = enqueue_presets(e, parse_space(e))
    assert points == [
        {"objective.lambdas.KL(q(z)||p(z))": 2.0},
        {"objective.lambdas.KL(q(z)||p(z))": 5000.0},
    ]


def test_enqueue_presets_complete_points_with_the_experiment_values() -> None:
    e = experiment(
        {"family": "kl-infovae", "lambda2": {"low": 2, "high": 8}},
        {"preset": "kl-infovae", "alpha": -0.5},  # lambda1 from the preset's defaults
        search={"enqueue_presets": [{"lambda1": 100.0}]},
    )
    (point,) = enqueue_presets(e, parse_space(e))
    assert point == {
        "objective.params.alpha": -0.5,
        "objective.params.lambda1": 100.0,
        "objective.params.lambda2": 4.0,  # the preset's 1.0 is outside [2, 8]: the middle
    }


def test_enqueue_presets_outside_the_box_is_refused() -> None:
    e = experiment({"family": "kl-infovae"}, search={"enqueue_presets": [{"alpha": 3.0}]})
    with pytest.raises(ConfigError, match=r"enqueue_presets\[0\].alpha: 3 is outside"):
        enqueue_presets(e, parse_space(e))


# --------------------------------------------------------------------------- which MI


def test_image_data_defaults_to_rate_mog_to_mi() -> None:
    mog = experiment({"family": "kl-infovae"})
    assert mog.search.metrics == ("nll", "mi") and mi_bound(mog).startswith("mi")
    mnist = experiment({"family": "kl-infovae"}, dataset={"name": "mnist"})
    assert mnist.search.metrics == ("nll", "rate")
    assert mi_bound(mnist).startswith("rate") and "upper bound on I_q" in mi_bound(mnist)
    kept = experiment(
        {"family": "kl-infovae"}, dataset={"name": "mnist"}, search={"metrics": ["nll", "mi"]}
    )
    assert kept.search.metrics == ("nll", "mi") and mi_bound(kept).startswith("mi")


def test_metrics_not_given_are_resolved_once_and_kept_by_the_file(tmp_path: Path) -> None:
    """Whether a file gave `search.metrics` is decided when it is loaded: overrides count, and
    the experiment as written (experiment.yaml, an export) holds the resolved metrics."""
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"name": "mnist"}, "search": {"num_samples": 3}}))
    assert load_experiment(path).search.metrics == ("nll", "rate")
    given = load_experiment(path, ["search.metrics=[nll,mi]"])
    assert given.search.metrics == ("nll", "mi")
    assert given.to_dict()["search"]["metrics"] == ["nll", "mi"]
    again = experiment_from_dict(load_experiment(path).to_dict())
    assert again.search.metrics == ("nll", "rate")


# --------------------------------------------------------------------------- the command line


BASE = {
    "name": "bad",
    "objective": {"preset": "kl-infovae", "alpha": 0.0, "lambda1": 2.0, "lambda2": 1.0},
    "space": {"family": "kl-infovae"},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"stepz": 3}}, "train.stepz: unknown key"),
        ({"train": {"steps": "many"}}, "train.steps: expected a whole number"),
        (
            {"space": {"family": "kl-infovae", "lambda1": {"low": -1, "high": 5}}},
            "negative λ range",
        ),
        (
            {"dataset": {"name": "mnist", "data_dir": "/nonexistent/mnist"}},
            "/nonexistent/mnist",
        ),
    ],
)
def test_bad_experiment_fails_before_ray(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    change: dict,
    message: str,
) -> None:
    def no_ray(*args: Any) -> bool:
        raise AssertionError("Ray must not start for an invalid experiment")

    monkeypatch.setattr(search_tune, "_start_ray", no_ray)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}, allow_unicode=True))
    code = run_search.main(["search", str(path), "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- the shipped files

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SEARCH_CONFIGS = sorted(  # experiment files with a space (suites, analysis/suite.py, list them)
    p.name for p in CONFIGS.glob("*.yaml") if "\nspace:" in p.read_text()
)


def write_mnist_fixture(directory: Path) -> None:
    """Four tiny IDX files in the MNIST layout (the data check reads them)."""
    write_idx_dir(directory, train=8, test=4)


@pytest.mark.parametrize("name", SEARCH_CONFIGS)
def test_shipped_search_configs_plan_without_ray(name: str, tmp_path: Path) -> None:
    overrides = []
    if "mnist" in name:
        write_mnist_fixture(tmp_path / "mnist")
        overrides.append(f"dataset.data_dir={tmp_path / 'mnist'}")
    e = load_experiment(CONFIGS / name, overrides)
    plan = plan_search(e, storage_root=str(tmp_path / "results"))
    paper_runs = name.startswith("paper-4.1")  # Figure 1: exactly its three runs
    assert plan.space.params and plan.num_samples >= (3 if paper_runs else 5)
    if e.dataset.name == "mnist":
        assert plan.metrics == ("nll", "rate")  # left at the default on image data
    assert not (tmp_path / "results").exists()  # planning writes nothing


def test_quick_is_the_default_and_a_small_multi_objective_mog_search() -> None:
    assert run_search.DEFAULT_EXPERIMENT == CONFIGS / "quick.yaml"
    e = load_experiment(CONFIGS / "quick.yaml")
    assert e.dataset.name == "mog" and len(e.search.metrics) == 2
    assert e.search.num_samples >= 12 and e.train.steps <= 1500 and e.model.hidden <= 64


def test_a_relative_data_dir_reaches_the_trials_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray runs each trial in a folder of its own: the plan resolves the path once, where the
    driver's data check read it, and experiment.yaml keeps the resolved one."""
    write_idx_dir(tmp_path / "digits", train=20, test=10)
    monkeypatch.chdir(tmp_path)
    e = experiment_from_dict(
        {
            "dataset": {"name": "mnist", "data_dir": "digits"},
            "model": {"z_dim": 2, "likelihood": "bernoulli"},
            "objective": {"preset": "elbo"},
            "space": {"params": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}},
        }
    )
    plan = plan_search(e, storage_root=str(tmp_path / "results"))
    assert plan.experiment.dataset.data_dir == str(tmp_path / "digits")
