"""Experiment files: the `Experiment` and its sections, loaded and validated once.

One file shape serves `train` (one config) and `search` (a config plus a `space`); where a
new key goes: docs/ARCHITECTURE.md. Every bad value fails at load time with a `ConfigError` whose
message names the dotted key and what is allowed, before any training or Ray start-up. The
objective is compiled when an `Experiment` is made (`Experiment.compiled`), once: the
`Compiled` travels with the experiment to the trainer and to Ray's workers.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from experiment.limits import check_counts, check_name
from experiment.samplers import SAMPLERS
from experiment.typed_yaml import apply_overrides, build, load_mapping, plain, set_dotted
from objectives.compile import Compiled, compile_objective
from objectives.config import ConfigError, ModelConfig, ObjectiveConfig
from objectives.implicit import implicit_encoder_form
from objectives.terms import FamilyError

__all__ = [
    "METRICS",
    "MI_BOUNDS",
    "ConfigError",
    "IMAGE_DATASETS",
    "Experiment",
    "default_metrics",
    "experiment_from_dict",
    "load_experiment",
]


@dataclass(frozen=True)
class DatasetConfig:
    name: Literal["mog", "mnist", "fashion-mnist"] = "mog"
    data_dir: str | None = None  # IDX directory; None picks the dataset's default location
    download: bool = False  # mnist only: fetch the four files into data_dir when missing
    train_size: int | None = None  # truncate the training set (None: all of it)
    test_size: int | None = None  # truncate the evaluation set (None: all of it)


# Discriminator updates per model step: more steps were no closer to the true divergence (the
# error is Adam's jitter at a constant rate, not lag), only slower; measured by
# tests/test_divergence_games.py, the figures in the README ("train.disc_steps").
DISC_STEPS = 1


@dataclass(frozen=True)
class LrScheduleConfig:
    """`train.lr_schedule`: a factor on train.lr and train.discriminator_lr at each update
    (training.schedule.lr_factor). Zhao et al.'s code: step, [10000, 100000], [0.1, 0.01]."""

    kind: Literal["constant", "step", "cosine"] = "constant"
    milestones: tuple[int, ...] = ()  # step: the updates from which each factor holds
    factors: tuple[float, ...] = ()  # step: the factor from each milestone on (before: 1)
    min_factor: float = 0.0  # cosine: the factor at its end
    steps: int | None = None  # cosine: the updates it decays over (None: train.steps)

    def __post_init__(self) -> None:
        key = "train.lr_schedule"
        if self.kind != "step" and (self.milestones or self.factors):
            raise ConfigError(f"{key}: milestones and factors belong to kind: step")
        if self.kind == "step" and (
            not self.milestones or len(self.factors) != len(self.milestones)
        ):
            raise ConfigError(f"{key}.factors: kind step needs one factor per milestone")
        if any(b <= a for a, b in itertools.pairwise((0, *self.milestones))):
            raise ConfigError(f"{key}.milestones: must be increasing steps > 0")
        if any(f <= 0 for f in self.factors) or not 0 <= self.min_factor <= 1:
            raise ConfigError(f"{key}: factors must be > 0 and min_factor in [0, 1]")
        if self.steps is not None and (self.kind != "cosine" or self.steps <= 0):
            raise ConfigError(f"{key}.steps: a positive horizon of kind: cosine")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000  # optimiser steps of the model
    batch_size: int = 100
    lr: float = 1e-3  # Adam, model (p and q)
    lr_schedule: LrScheduleConfig = field(default_factory=LrScheduleConfig)  # factor per step
    discriminator_lr: float = 1e-3  # Adam, each discriminator
    disc_steps: int = DISC_STEPS  # discriminator updates per model step (each on a fresh batch)
    eval_every: int = 500  # steps between evaluations (and checkpoints)
    eval_size: int | None = None  # test points used by evaluation (None: the whole test set)
    nll_train_size: int = 1000  # fixed training points of `nll_train` (0: not computed)
    iw_samples: int = 1000  # importance samples per test point for image nll
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast the training forward pass
    threads: int | None = None  # torch CPU threads (None: what the scheduler granted, or 1)


@dataclass(frozen=True)
class SearchConfig:
    num_samples: int = 12  # trials
    max_concurrent: int = 2
    sampler: str = "tpe"  # a name in experiment.samplers.SAMPLERS
    metrics: tuple[str, ...] | None = None  # None: not given, resolved by `default_metrics`
    modes: tuple[Literal["min", "max"], ...] = ("min", "max")
    scheduler: Literal["fifo", "asha", "halving"] = "fifo"  # asha: one metric; halving: below
    halving_rate: float = 3.0  # η of successive halving over members: rungs at 1/η², 1/η
    refill: bool = True  # a population trial gives an ended member's slot a new point
    enqueue_presets: tuple[Mapping[str, float], ...] = ()  # points tried first
    startup: Literal["random", "orthogonal"] = "random"  # the start-up: drawn, or placed
    max_failures: int = 1  # retries of a trial that raised (a diverged trial is not retried)
    seed: int | None = None  # sampler seed (None: the experiment seed)
    study: str | None = None  # an Optuna storage URL (None: a journal file beside the results)
    population: int | Literal["auto"] = 1  # members trained together in one trial (auto: a rule)


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # per trial; fractions pack several trials on one device


METRICS = (
    "nll",
    "nll_train",
    "elbo",
    "rate",
    "distortion",
    "mi",
    "mi_upper",
    "mi_ba",
    "kl_qz_pz",
    "mmd_qz_pz",
    "active_units",
    "floor_units",
    "train_samples_per_s",
)
# Which side of I_q(x;z) each information metric estimates: every plot axis and CSV column that
# shows one says so (training.information explains each bound).
MI_BOUNDS = {"mi": "lower", "mi_ba": "lower", "mi_upper": "upper", "rate": "upper"}
IMAGE_DATASETS = ("mnist", "fashion-mnist")


def default_metrics(dataset: str) -> tuple[str, ...]:
    """`search.metrics` when the file does not give them: NLL down and an MI estimate up. On
    image data the aggregate-posterior `mi` saturates at log N, so the rate stands in."""
    return ("nll", "rate") if dataset in IMAGE_DATASETS else ("nll", "mi")


@dataclass(frozen=True)
class Experiment:
    name: str = "experiment"
    seed: int = 0
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=lambda: ObjectiveConfig(preset="elbo"))
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    space: Mapping[str, Any] = field(default_factory=dict)  # parsed by search.spaces
    storage: str = "./results"

    def __post_init__(self) -> None:
        if self.search.metrics is None:  # not given: resolved here, once, and kept
            metrics = default_metrics(self.dataset.name)
            object.__setattr__(self, "search", dataclasses.replace(self.search, metrics=metrics))
        _validate(self)
        _ = self.compiled  # out-of-family or intractable objectives fail here, by key

    @cached_property
    def compiled(self) -> Compiled:
        """The objective's Lagrangian and tractable form, compiled once per experiment."""
        try:
            compiled = compile_objective(self.objective)
        except FamilyError as error:
            raise ConfigError(f"objective: {error}") from None
        if not compiled.tractable:
            raise ConfigError(
                f"objective: {compiled.lagrangian.describe()} is intractable in every toolbox "
                f"(no tractable form under the elementary transformations); residual terms: "
                f"{', '.join(compiled.residual)}"
            )
        return compiled

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `experiment_from_dict` reads back to an equal experiment."""
        return plain(self)

    def with_values(self, values: Mapping[str, Any]) -> Experiment:
        """A copy with dotted keys set, e.g. {"objective.params.beta": 4.0}."""
        data = self.to_dict()
        for key, value in values.items():
            set_dotted(data, key, value)
        return experiment_from_dict(data)

    @property
    def sampler_seed(self) -> int:
        """The seed of the search's sampler and its placed start-up: `search.seed`, else the
        experiment's."""
        return self.search.seed if self.search.seed is not None else self.seed


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> Experiment:
    """Read an experiment file and apply `--set key=value` overrides."""
    data = apply_overrides(load_mapping(path), overrides)
    try:
        return experiment_from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def experiment_from_dict(data: Mapping[str, Any]) -> Experiment:
    """Build and validate an `Experiment`; unknown keys and wrong types raise ConfigError."""
    data = dict(data)
    objective = data.get("objective")
    if isinstance(objective, Mapping):
        data["objective"] = _split_preset_params(objective)
    return build(Experiment, data)


def _split_preset_params(objective: Mapping[str, Any]) -> dict[str, Any]:
    """`{preset: beta-vae, beta: 4}` -> `{preset: beta-vae, params: {beta: 4}}`."""
    known = {f.name for f in dataclasses.fields(ObjectiveConfig)}
    out = {k: v for k, v in objective.items() if k in known}
    extra = {k: v for k, v in objective.items() if k not in known}
    if extra and objective.get("preset") is not None:
        params = dict(out.get("params") or {})
        params.update(extra)
        out["params"] = params
    else:
        out.update(extra)  # reported as unknown keys by build
    return out


def _validate(experiment: Experiment) -> None:
    """Cross-field checks; called by Experiment.__post_init__."""
    e = experiment
    check_name(e.name)
    check_counts(e)  # every count within bounds before anything allocates (experiment.limits)
    positive = {"train.lr": e.train.lr, "train.discriminator_lr": e.train.discriminator_lr}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    if e.resources.cpu < 0 or e.resources.gpu < 0:
        raise ConfigError("resources: cpu and gpu must be >= 0")
    if e.resources.cpu == 0 and e.resources.gpu == 0:
        raise ConfigError("resources: a trial needs cpu > 0 or gpu > 0")
    if e.search.sampler not in SAMPLERS:
        raise ConfigError(
            f"search.sampler: {e.search.sampler!r} is not one of {', '.join(map(repr, SAMPLERS))}"
        )
    if len(e.search.metrics) != len(e.search.modes):
        raise ConfigError(
            f"search.modes: one mode per metric; metrics={list(e.search.metrics)} "
            f"modes={list(e.search.modes)}"
        )
    for metric in e.search.metrics:
        if metric not in METRICS:
            raise ConfigError(
                f"search.metrics: unknown metric {metric!r}; known: {', '.join(METRICS)}"
            )
    if e.search.scheduler == "asha" and e.search.population not in (1, "auto"):
        raise ConfigError(
            "search.population: asha stops whole trials, and a population trial holds several "
            "points; use search.population: 1 with scheduler asha"
        )
    if e.search.halving_rate <= 1:
        raise ConfigError(f"search.halving_rate: must be > 1, got {e.search.halving_rate}")
    if e.search.scheduler == "halving" and not e.search.refill:
        raise ConfigError("search.scheduler: halving refills stopped members' slots; set refill")
    if e.search.startup == "orthogonal" and SAMPLERS[e.search.sampler].grid:
        raise ConfigError(
            "search.startup: orthogonal places a model's start-up points; the grid sampler "
            "has none (use startup: random)"
        )
    if e.search.scheduler == "asha" and len(e.search.metrics) != 1:
        raise ConfigError("search.scheduler: asha needs exactly one metric in search.metrics")
    o = e.objective
    if o.preset is None and not o.lambdas:
        raise ConfigError("objective: give a `preset` or a Lagrangian with `lambdas`")
    if o.preset is not None and o.lambdas:
        raise ConfigError("objective: give either `preset` or `lambdas`, not both")
    if not isinstance(o.kernel_bandwidth, str) and o.kernel_bandwidth <= 0:
        raise ConfigError(f"objective.kernel_bandwidth: must be > 0, got {o.kernel_bandwidth}")
    if o.mi_upper_bound is not None and o.mi_upper_bound <= 0:
        raise ConfigError("objective.mi_upper_bound: must be > 0 nats")
    if o.mi_upper_bound_on == "distortion" and e.dataset.name != "mog":
        raise ConfigError(
            "objective.mi_upper_bound_on: distortion caps H(x) - distortion, and the data "
            f"entropy H(x) is known for dataset mog only, not {e.dataset.name}; use rate"
        )
    if e.model.encoder == "implicit":
        _validate_implicit_encoder(e)
    if o.mode == "lagrangian" and not o.dual.slack:
        raise ConfigError("objective.dual.slack: lagrangian mode needs {term: ε} to adapt")


def _validate_implicit_encoder(experiment: Experiment) -> None:
    """An implicit encoder has no density q(z|x): the objective must not need it."""
    o = experiment.objective
    if o.mode == "lagrangian" or o.mi_upper_bound is not None:
        raise ConfigError(
            "model.encoder: an implicit encoder has no closed-form rate, which dual ascent and "
            "objective.mi_upper_bound read; use model.encoder: gaussian"
        )
    try:
        implicit_encoder_form(experiment.compiled.coefficients())
    except FamilyError as error:
        raise ConfigError(f"model.encoder: {error}") from None
