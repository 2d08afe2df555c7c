"""Experiment files: bad values fail at load time with the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiment.config import (
    ConfigError,
    Experiment,
    apply_overrides,
    experiment_from_dict,
    load_experiment,
)
from experiment.samplers import SAMPLERS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return path


def test_a_full_file_loads_with_preset_parameters_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: demo
seed: 3
dataset: {name: mog}
model: {hidden: 32, z_dim: 1}
objective: {preset: beta-vae, beta: 4}
train: {steps: 100, lr: 2e-3}
resources: {cpu: 0.5}
""",
    )
    experiment = load_experiment(path, ["train.steps=7", "objective.beta=0.5"])
    assert experiment.name == "demo" and experiment.seed == 3
    assert experiment.train.steps == 7
    assert experiment.train.lr == pytest.approx(2e-3)
    assert experiment.objective.params == {"beta": 0.5}
    assert experiment.resources.cpu == 0.5


def test_round_trip_through_plain_data() -> None:
    experiment = experiment_from_dict(
        {"objective": {"lambdas": {"KL(q(x,z)||p(x,z))": 2}, "alpha2": -0.5}}
    )
    assert experiment_from_dict(experiment.to_dict()) == experiment


def test_with_values_sets_dotted_keys_including_term_names() -> None:
    base = experiment_from_dict({"objective": {"lambdas": {"KL(q(x,z)||p(x,z))": 1.0}}})
    changed = base.with_values({"objective.lambdas.KL(q(x,z)||p(x,z))": 5.0, "train.lr": 0.01})
    assert changed.objective.lambdas == {"KL(q(x,z)||p(x,z))": 5.0}
    assert changed.train.lr == 0.01
    assert base.objective.lambdas == {"KL(q(x,z)||p(x,z))": 1.0}  # frozen, not mutated


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"stepz": 3}}, "train.stepz: unknown key"),
        ({"train": {"steps": "many"}}, "train.steps: expected a whole number"),
        ({"train": {"steps": 0}}, "train.steps: must be > 0"),
        ({"train": {"lr": True}}, "train.lr: expected a number"),
        ({"model": {"likelihood": "poisson"}}, "model.likelihood: 'poisson' is not one of"),
        ({"dataset": {"name": "cifar"}}, "dataset.name"),
        ({"search": {"metrics": ["nll", "fid"], "modes": ["min", "max"]}}, "unknown metric"),
        ({"search": {"metrics": ["nll"], "modes": ["min", "max"]}}, "one mode per metric"),
        ({"objective": {"lambdas": {"KL(q(x,z)||p(x,z))": -1}}}, "must be > 0"),
        ({"objective": {"lambdas": {"KL(q(y)||p(y))": 1}}}, "unknown term"),
        ({"objective": {"preset": "beta-vae", "gamma": 1}}, "unknown parameter 'gamma'"),
        ({"objective": {"lambdas": {"KL(q(z)||p(z))": 1}}}, "no constraint set"),
        (
            {"objective": {"lambdas": {"MMD(q(z|x)||p(z|x))": 1, "KL(q(x)||p(x))": 1}}},
            "intractable",
        ),
        ({"resources": {"cpu": 0, "gpu": 0}}, "resources"),
        ({"objective": {"preset": "elbo", "mode": "lagrangian"}}, "dual.slack"),
    ],
)
def test_bad_values_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        experiment_from_dict(data)
    assert needle in str(info.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_experiment(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(write(tmp_path, "train: {steps: [1,"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_experiment(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match=r"experiment\.yaml: train\.steps"):
        load_experiment(write(tmp_path, "train: {steps: -1}\n"))


def test_overrides_parse_yaml_scalars_and_reject_malformed() -> None:
    data = apply_overrides({}, ["train.lr=2e-3", "dataset.download=true", "search.metrics=[nll]"])
    assert data == {
        "train": {"lr": 2e-3},
        "dataset": {"download": True},
        "search": {"metrics": ["nll"]},
    }
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="is a value, not a mapping"):
        apply_overrides({"train": 3}, ["train.lr=1"])


def test_defaults_are_a_valid_experiment() -> None:
    assert Experiment().objective.preset == "elbo"
    assert Experiment().search.metrics == ("nll", "mi")  # not given: resolved on load


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_of_the_table_is_a_valid_search_sampler(sampler: str) -> None:
    assert experiment_from_dict({"search": {"sampler": sampler}}).search.sampler == sampler


def test_an_unknown_sampler_is_one_error_naming_every_sampler_of_the_table() -> None:
    with pytest.raises(ConfigError) as info:
        experiment_from_dict({"search": {"sampler": "cmaes"}})
    message = str(info.value)
    assert message.startswith("search.sampler: 'cmaes' is not one of")
    assert all(repr(name) in message for name in SAMPLERS)
