"""The `space:` section of an experiment file, read and validated into a `Space`.

Validation fails with a `ConfigError` naming the key: an unknown family or parameter,
low >= high, a log range with low <= 0, a λ range reaching <= 0 ("negative λ range"), a key
the experiment does not have. See `search.spaces` for the section's shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from experiment.config import ConfigError, Experiment
from objectives.presets import get_preset
from objectives.terms import FamilyError, canonical_term
from search.spaces import (
    FAMILIES,
    FAMILY_ALIASES,
    LAMBDA_RANGE,
    Family,
    Param,
    Space,
    lambda_param,
)


def parse_space(experiment: Experiment) -> Space:
    """The experiment's `space:` section as a validated `Space` (ConfigError names the key)."""
    raw = _nest_bounds(experiment.space)
    if not raw:
        raise ConfigError(
            "space: the experiment has no `space` section; give `space: {family: NAME}` "
            f"(families: {', '.join(FAMILIES)}) or `space: {{params: {{dotted.key: "
            "{low: L, high: H}}}}`"
        )
    params: dict[str, Param] = {}
    family_name = raw.pop("family", None)
    explicit = raw.pop("params", None) or {}
    if not isinstance(explicit, Mapping):
        raise ConfigError(
            f"space.params: expected a mapping of dotted.key -> range, got {explicit!r}"
        )
    if family_name is not None:
        params.update(_family_params(experiment, family_name, raw))
    elif raw:
        raise ConfigError(
            f"space.{sorted(raw)[0]}: unknown key; without `family` the space takes only `params`"
        )
    for key, spec in explicit.items():
        base = _explicit_default(experiment, str(key))
        param = _with_range(base, spec, f"space.params.{key}")
        if param.key in params:
            raise ConfigError(f"space.params.{key}: already searched by the family; set it once")
        params[param.key] = param
    if not params:
        raise ConfigError("space: no parameter to search; list ranges or `lambdas`")
    space = Space(tuple(params.values()), FAMILY_ALIASES.get(family_name, family_name))
    _check_settable(experiment, space)
    return space


def _nest_bounds(space: Mapping[str, Any]) -> dict[str, Any]:
    """Fold flat keys from `--set space.lambda.low=10` ("lambda.low", "params.train.lr.high",
    "lambdas.KL(q(z)||p(z)).low") into the nested ranges the file would hold."""
    raw = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in space.items()}
    for key in [k for k in raw if "." in k and k.rsplit(".", 1)[1] in ("low", "high", "log")]:
        name, bound = key.rsplit(".", 1)
        section, _, rest = name.partition(".")
        value = raw.pop(key)
        node = raw
        if section in ("params", "lambdas") and rest:
            node = raw.setdefault(section, {})
            if not isinstance(node, dict):
                raise ConfigError(f"space.{key}: space.{section} is not a mapping")
            name = rest
        spec = node.setdefault(name, {})
        if not isinstance(spec, dict):
            raise ConfigError(f"space.{key}: space.{name} is not a range mapping")
        node[name] = {**spec, bound: value}
    return raw


def _family_params(experiment: Experiment, name: Any, raw: dict[str, Any]) -> dict[str, Param]:
    """The family's parameters with the overrides in `raw` (short name -> range) applied."""
    key = FAMILY_ALIASES.get(name, name)
    if not isinstance(key, str) or key not in FAMILIES:
        known = ", ".join([*FAMILIES, *FAMILY_ALIASES])
        raise ConfigError(f"space.family: unknown family {name!r}; known families: {known}")
    family = FAMILIES[key]
    _check_objective_matches(experiment, family)
    if family.preset is None:
        return _lagrangian_params(experiment, family, raw)
    unknown = sorted(set(raw) - set(family.params))
    if unknown:
        allowed = ", ".join(family.params)
        raise ConfigError(
            f"space.{unknown[0]}: family {family.name} has no parameter {unknown[0]!r} "
            f"(its parameters: {allowed}; add other keys under space.params)"
        )
    return {
        p.key: _with_range(p, raw[n], f"space.{n}") if n in raw else _checked(p, f"space.{n}")
        for n, p in family.params.items()
    }


def _lagrangian_params(
    experiment: Experiment, family: Family, raw: dict[str, Any]
) -> dict[str, Param]:
    """α1/α2 when listed, and λ of the chosen terms (a list, or term -> range)."""
    params: dict[str, Param] = {}
    lambdas = raw.pop("lambdas", None)
    unknown = sorted(set(raw) - {"alpha1", "alpha2"})
    if unknown:
        raise ConfigError(
            f"space.{unknown[0]}: unknown key for family lagrangian (allowed: alpha1, alpha2, "
            "lambdas, params)"
        )
    for name, spec in raw.items():
        param = _with_range(family.params[name], spec, f"space.{name}")
        params[param.key] = param
    if isinstance(lambdas, list | tuple):
        lambdas = {term: {} for term in lambdas}
    if lambdas is None and not params:
        lambdas = {term: {} for term in experiment.objective.lambdas}
        params["objective.alpha2"] = family.params["alpha2"]
    if lambdas is not None and not isinstance(lambdas, Mapping):
        raise ConfigError(
            f"space.lambdas: expected a list of terms or term -> range, got {lambdas!r}"
        )
    spelled = {_canonical(t, "objective.lambdas"): t for t in experiment.objective.lambdas}
    for term, spec in (lambdas or {}).items():
        where = f"space.lambdas.{term}"
        canonical = _canonical(str(term), where)
        if canonical in ("I_p", "I_q"):
            raise ConfigError(f"{where}: search I_p / I_q as alpha1 / alpha2, not as a λ")
        base = lambda_param(f"objective.lambdas.{spelled.get(canonical, canonical)}", *LAMBDA_RANGE)
        param = _with_range(base, spec or {}, where)
        params[param.key] = param
    return params


def _explicit_default(experiment: Experiment, key: str) -> Param:
    """The default range shape of an explicit dotted key (λ keys: log, multiplier)."""
    if key.startswith("objective.lambdas."):
        term = key[len("objective.lambdas.") :]
        spelled = {_canonical(t, "objective.lambdas"): t for t in experiment.objective.lambdas}
        canonical = _canonical(term, f"space.params.{key}")
        return lambda_param(f"objective.lambdas.{spelled.get(canonical, canonical)}", 1.0, 2.0)
    if key.startswith("objective.params."):
        name = key[len("objective.params.") :]
        multiplier = name.startswith("lambda")
        return Param(key, 1.0, 2.0, log=multiplier, multiplier=multiplier)
    return Param(key, 1.0, 2.0)


def _with_range(base: Param, spec: Any, where: str) -> Param:
    """`base` with low/high/log from a `{low, high, log}` mapping, validated."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: expected {{low: L, high: H, log: true|false}}, got {spec!r}")
    unknown = sorted(set(spec) - {"low", "high", "log"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: low, high, log)")
    values = {}
    for bound in ("low", "high"):
        value = spec.get(bound, getattr(base, bound))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{where}.{bound}: expected a finite number, got {value!r}")
        values[bound] = float(value)
    log = spec.get("log", base.log)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
    param = Param(base.key, values["low"], values["high"], log, base.multiplier)
    return _checked(param, where)


def _checked(param: Param, where: str) -> Param:
    if param.multiplier and param.low <= 0:
        kind = "negative λ range" if param.low < 0 else "λ range"
        starts = "" if param.low < 0 else " starts at 0"
        raise ConfigError(
            f"{where}: {kind} [{param.low:g}, {param.high:g}]{starts}: a Lagrange multiplier "
            "must stay > 0 (Definition 5)"
        )
    if param.low >= param.high:
        raise ConfigError(f"{where}: low ({param.low:g}) must be < high ({param.high:g})")
    if param.log and param.low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got low={param.low:g}")
    if "/" in param.key:
        raise ConfigError(f"{where}: a searched key cannot contain '/'")
    return param


def _canonical(term: str, where: str) -> str:
    try:
        return canonical_term(term)
    except FamilyError as error:
        raise ConfigError(f"{where}: {error}") from None


def _check_objective_matches(experiment: Experiment, family: Family) -> None:
    objective = experiment.objective
    if family.preset is None:
        if objective.preset is not None:
            raise ConfigError(
                f"space.family: lagrangian searches α1, α2 and λ of the Lagrangian form, but "
                f"objective.preset is {objective.preset!r}; give objective.lambdas instead"
            )
        return
    try:
        current = get_preset(objective.preset).name if objective.preset else None
    except FamilyError as error:
        raise ConfigError(f"objective.preset: {error}") from None
    if current != family.preset:
        found = f"preset {objective.preset!r}" if objective.preset else "a Lagrangian (lambdas)"
        raise ConfigError(
            f"space.family: {family.name} searches preset {family.preset!r}, but the objective "
            f"is {found}; set objective.preset: {family.preset}"
        )


def _check_settable(experiment: Experiment, space: Space) -> None:
    """Every key names a number the experiment file has (or a parameter of its preset).

    Whether the objective compiles there is `check_compiles`'s to say, with the region."""
    preset = experiment.objective.preset
    allowed = dict(get_preset(preset).params) if preset else {}
    for param in space.params:
        where = f"space: {param.key}"
        if param.key.startswith("objective.params.") and param.name not in allowed:
            names = ", ".join(allowed) or "none"
            raise ConfigError(
                f"{where}: preset {preset!r} has no parameter {param.name!r} ({names})"
            )
        try:
            experiment.with_values({param.key: param.low})
        except ConfigError as error:
            if not str(error).startswith("objective:"):  # the compiler's verdict: see below
                raise ConfigError(f"{where}: {error}") from None
