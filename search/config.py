"""Experiment files: frozen dataclasses, YAML loading, dotted overrides, validation.

One file shape serves `train` (one config) and `search` (a config plus a `space`); see
DESIGN.md, "Experiment file". Every bad value fails at load time with a `ConfigError` whose
message names the dotted key and what is allowed, before any training or Ray start-up.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A malformed experiment file or override; the message names the key."""


@dataclass(frozen=True)
class DatasetConfig:
    name: Literal["mog", "mnist", "fashion-mnist"] = "mog"
    data_dir: str | None = None  # IDX directory; None picks the dataset's default location
    download: bool = False  # mnist only: fetch the four files into data_dir when missing
    train_size: int | None = None  # truncate the training set (None: all of it)
    test_size: int | None = None  # truncate the evaluation set (None: all of it)


@dataclass(frozen=True)
class ModelConfig:
    hidden: int = 1024  # units per hidden layer (paper C.1/C.2: 1024)
    layers: int = 2  # hidden layers in encoder, decoder and discriminators
    z_dim: int = 1  # latent size (paper: 1 for mog, 50 for MNIST)
    activation: Literal["tanh", "relu", "softplus", "elu"] = "tanh"
    likelihood: Literal["bernoulli", "gaussian"] | None = None  # None: the dataset's own
    discriminator_hidden: int = 256  # units per hidden layer of each discriminator


@dataclass(frozen=True)
class DualConfig:
    """Dual ascent on chosen multipliers (the paper: λ should be maximised, Section 4.1)."""

    slack: Mapping[str, float] = field(default_factory=dict)  # term -> ε: constraint D <= ε
    lr: float = 1e-3  # step size of projected gradient ascent on λ
    lambda_min: float = 1e-3  # λ is clipped to [lambda_min, lambda_max]
    lambda_max: float = 1e4


@dataclass(frozen=True)
class ObjectiveConfig:
    preset: str | None = None  # a name from objectives.presets.PRESETS
    params: Mapping[str, float] = field(default_factory=dict)  # the preset's parameters
    alpha1: float = 0.0  # coefficient of I_p(x;z) (Lagrangian form, no preset)
    alpha2: float = 0.0  # coefficient of I_q(x;z)
    lambdas: Mapping[str, float] = field(default_factory=dict)  # term -> multiplier
    kernel: Literal["imq", "rbf"] = "imq"  # MMD kernel
    mi_upper_bound: float | None = None  # paper 4.1: cap on the rate E KL(q(z|x)||p(z)), nats
    mode: Literal["fixed", "lagrangian"] = "fixed"  # lagrangian: dual ascent on `dual.slack`
    dual: DualConfig = field(default_factory=DualConfig)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000  # optimiser steps of the model
    batch_size: int = 100
    lr: float = 1e-3  # Adam, model (p and q)
    discriminator_lr: float = 1e-3  # Adam, each discriminator
    eval_every: int = 500  # steps between evaluations (and checkpoints)
    eval_size: int | None = None  # test points used by evaluation (None: the whole test set)
    iw_samples: int = 1000  # importance samples per test point for image nll
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast the training forward pass
    threads: int | None = None  # torch CPU threads (None: what the scheduler granted, or 1)


@dataclass(frozen=True)
class SearchConfig:
    num_samples: int = 12  # trials
    max_concurrent: int = 2
    sampler: Literal["tpe", "nsga2", "random", "grid"] = "tpe"
    metrics: tuple[str, ...] = ("nll", "mi")
    modes: tuple[Literal["min", "max"], ...] = ("min", "max")
    scheduler: Literal["fifo", "asha"] = "fifo"  # asha needs a single metric
    enqueue_presets: tuple[Mapping[str, float], ...] = ()  # points tried first
    max_failures: int = 1  # retries of a trial that raised (a diverged trial is not retried)
    seed: int | None = None  # sampler seed (None: the experiment seed)


@dataclass(frozen=True)
class ResourcesConfig:
    cpu: float = 1.0  # per trial
    gpu: float = 0.0  # per trial; fractions pack several trials on one device


METRICS = (
    "nll",
    "elbo",
    "rate",
    "distortion",
    "mi",
    "kl_qz_pz",
    "mmd_qz_pz",
    "active_units",
    "train_samples_per_s",
)


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
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `experiment_from_dict` reads back to an equal experiment."""
        return _plain(self)

    def with_values(self, values: Mapping[str, Any]) -> Experiment:
        """A copy with dotted keys set, e.g. {"objective.params.beta": 4.0}."""
        data = self.to_dict()
        for key, value in values.items():
            _set_dotted(data, key, value)
        return experiment_from_dict(data)


# --------------------------------------------------------------------------- loading


def load_experiment(path: str | Path, overrides: Iterable[str] = ()) -> Experiment:
    """Read an experiment file and apply `--set key=value` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {_kind(data)}")
    data = apply_overrides(data, overrides)
    try:
        return experiment_from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `dotted.key=value` strings; values are read as YAML scalars (2e-3, true, [1,2])."""
    data = _deep_copy(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r}: expected dotted.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        value = _number_or_same(value)
        _set_dotted(data, key.strip(), value)
    return data


def experiment_from_dict(data: Mapping[str, Any]) -> Experiment:
    """Build and validate an `Experiment`; unknown keys and wrong types raise ConfigError."""
    data = dict(data)
    objective = data.get("objective")
    if isinstance(objective, Mapping):
        data["objective"] = _split_preset_params(objective)
    return _build(Experiment, data, prefix="")


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
        out.update(extra)  # reported as unknown keys by _build
    return out


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'experiment'}: expected a mapping, got {_kind(data)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key; allowed under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{prefix.rstrip('.')}: {error}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against a type hint, converting YAML's ints to floats and lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_kind(value)}")
        if not args or args[1] is Any:
            return dict(value)
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        value = _number_or_same(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def _validate(experiment: Experiment) -> None:
    """Cross-field checks; called by Experiment.__post_init__."""
    e = experiment
    positive = {
        "train.steps": e.train.steps,
        "train.batch_size": e.train.batch_size,
        "train.eval_every": e.train.eval_every,
        "train.iw_samples": e.train.iw_samples,
        "train.lr": e.train.lr,
        "train.discriminator_lr": e.train.discriminator_lr,
        "model.hidden": e.model.hidden,
        "model.layers": e.model.layers,
        "model.z_dim": e.model.z_dim,
        "search.num_samples": e.search.num_samples,
        "search.max_concurrent": e.search.max_concurrent,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    if e.resources.cpu < 0 or e.resources.gpu < 0:
        raise ConfigError("resources: cpu and gpu must be >= 0")
    if e.resources.cpu == 0 and e.resources.gpu == 0:
        raise ConfigError("resources: a trial needs cpu > 0 or gpu > 0")
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
    if e.search.scheduler == "asha" and len(e.search.metrics) != 1:
        raise ConfigError("search.scheduler: asha needs exactly one metric in search.metrics")
    if not e.name or "/" in e.name:
        raise ConfigError(f"name: must be a non-empty name without '/', got {e.name!r}")
    o = e.objective
    if o.preset is None and not o.lambdas:
        raise ConfigError("objective: give a `preset` or a Lagrangian with `lambdas`")
    if o.preset is not None and o.lambdas:
        raise ConfigError("objective: give either `preset` or `lambdas`, not both")
    if o.mi_upper_bound is not None and o.mi_upper_bound <= 0:
        raise ConfigError("objective.mi_upper_bound: must be > 0 nats")
    _check_objective(o)
    if o.mode == "lagrangian" and not o.dual.slack:
        raise ConfigError("objective.dual.slack: lagrangian mode needs {term: ε} to adapt")


def _check_objective(objective: ObjectiveConfig) -> None:
    """The objective must be a trainable member of the family (compiled at load time)."""
    from objectives.compile import compile_objective
    from objectives.terms import FamilyError

    try:
        compiled = compile_objective(objective)
    except FamilyError as error:
        raise ConfigError(f"objective: {error}") from None
    if not compiled.tractable:
        blocked = ", ".join(compiled.residual)
        raise ConfigError(f"objective: intractable in every toolbox, blocked by {blocked}")


# --------------------------------------------------------------------------- helpers


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts. Keys inside `lambdas`/`slack`/`params` may contain dots."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        if part in ("lambdas", "slack", "params", "space"):
            rest = ".".join(parts[i + 1 :])
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is not a mapping")
            node[rest] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {'.'.join(parts[: i + 1])} is a value, not a mapping")
        node = child
    node[parts[-1]] = value


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _number_or_same(value: Any) -> Any:
    """'2e-3' -> 0.002: YAML 1.1 reads exponents without a dot as text."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return value


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
