"""Search spaces over the Lagrange multipliers (α1, α2, λ), per family, as data.

Paper: Definition 5 (the family: α1 I_p + α2 I_q + Σ λ_i D_i with every λ_i > 0), Theorems 1-3
(the tractable sub-families and their free parameters) and Section 4.2 (λ up to 5000).

A space is a tuple of `Param`s: a dotted experiment key (what `Experiment.with_values` sets),
a range and whether it is sampled log-uniformly. λ ranges are log-uniform, α and β linear.
The `FAMILIES` registry holds each named family's preset and default ranges; nothing here
trains or samples.

An experiment's `space:` section names a family, lists dotted keys, or both:

    space:                                   # a named family, ranges overridden by short name
      family: kl-infovae                     # its preset must be the experiment's objective
      lambda1: {low: 1, high: 5000}          # a bound left out keeps the family's default

    space:                                   # the general Lagrangian (objective: {lambdas: ...})
      family: lagrangian
      alpha2: {low: -1, high: 1}             # alpha1 / alpha2: searched when listed
      lambdas:                               # chosen terms: a list (range LAMBDA_RANGE, log)
        KL(q(z)||p(z)): {low: 1, high: 5000} #   or term -> range
                                             # nothing listed: alpha2 and every λ of the objective
    space:                                   # explicit dotted keys (alone or beside a family)
      params:
        objective.params.beta: {low: 0.1, high: 3}
        train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}

`log` defaults to true for a λ (an `objective.lambdas.*` key or a preset's `lambda*`) and to
false otherwise. Families: beta-elbo (β), kl-infovae (α, λ1, λ2), mmd-vae (α, λ), infovae
(β, λ: Section 4.2), kl-infogan (λ1, λ2), infogan (λ1 of JS), kl-infobigan (α, λ1, λ2)
and lagrangian.

Validation (`parse_space`) fails with a `ConfigError` naming the key: an unknown family or
parameter, low >= high, a log range with low <= 0, a λ range reaching <= 0 ("negative λ range").
`check_compiles` then compiles a grid over the box (corners and midpoints) with the objectives
compiler and refuses the space, naming the refused region, before any trial runs;
`refusal(experiment, point)` is the same check for one sampled point.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from objectives.terms import FamilyError, canonical_term
from search.config import ConfigError, Experiment

LAMBDA_RANGE = (0.1, 5000.0)  # default λ range of the general space (paper 4.2 goes to 5000)
ALPHA_RANGE = (-1.0, 1.0)  # default α range: information minimising (>0) to maximising (<0)
GRID_LIMIT = 729  # most points compiled by `check_compiles` (3 values per parameter up to 6)


@dataclass(frozen=True)
class Param:
    """One searched number: a dotted experiment key and its range."""

    key: str  # dotted experiment key, e.g. "objective.params.beta"
    low: float
    high: float
    log: bool = False  # sample log-uniformly (λ) or uniformly (α, β)
    multiplier: bool = False  # a Lagrange multiplier λ: the whole range must stay > 0

    @property
    def name(self) -> str:
        """Short name: the parameter or term after the section, e.g. "beta"."""
        for section in ("objective.params.", "objective.lambdas.", "objective."):
            if self.key.startswith(section):
                return self.key[len(section) :]
        return self.key

    def grid(self, points: int) -> list[float]:
        """`points` values from low to high, evenly spaced (geometrically when log)."""
        if points == 1:
            return [self.middle]
        if self.log:
            ratio = math.log(self.high / self.low) / (points - 1)
            inner = [self.low * math.exp(ratio * i) for i in range(1, points - 1)]
        else:
            inner = [
                self.low + (self.high - self.low) * i / (points - 1) for i in range(1, points - 1)
            ]
        return [self.low, *inner, self.high]  # exact ends: samplers check values against them

    @property
    def middle(self) -> float:
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class Family:
    """A tractable sub-family of the paper: its preset and default parameter ranges."""

    name: str
    preset: str | None  # the objective preset it searches; None: the Lagrangian form
    params: Mapping[str, Param] = field(default_factory=dict)  # short name -> default range
    paper: str = ""


def _alpha(key: str) -> Param:
    return Param(key, *ALPHA_RANGE)


def _lam(key: str, low: float, high: float) -> Param:
    return Param(key, low, high, log=True, multiplier=True)


def _family(name: str, preset: str | None, paper: str, *params: Param) -> Family:
    return Family(name, preset, {p.name: p for p in params}, paper)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        _family(
            "beta-elbo",
            "beta-vae",
            "Theorem 1 / Eq. 15: (β-1) I_q + KL(q(x|z)||p(x|z)) + β KL(q(z)||p(z))",
            Param("objective.params.beta", 0.1, 3.0),
        ),
        _family(
            "kl-infovae",
            "kl-infovae",
            "Theorem 2, L_InfoVAE: α I_q + KL(q(x|z)||p(x|z)) + λ1 KL(q(z)||p(z)) "
            "+ λ2 KL(p(z)||q(z))",
            _alpha("objective.params.alpha"),
            _lam("objective.params.lambda1", 0.5, 5000.0),
            _lam("objective.params.lambda2", 0.1, 100.0),
        ),
        _family(
            "mmd-vae",
            "mmd-vae",
            "Section 3.4, L_MMD-VAE: α I_q + KL(q(x|z)||p(x|z)) + λ MMD(p(z)||q(z))",
            _alpha("objective.params.alpha"),
            _lam("objective.params.lambda", 1.0, 5000.0),
        ),
        _family(
            "infovae",
            "infovae",
            "Section 4.2: L_β-ELBO + λ MMD(q(z)||p(z)), the paper's MNIST search",
            Param("objective.params.beta", 0.1, 3.0),
            _lam("objective.params.lambda", 1.0, 5000.0),
        ),
        _family(
            "kl-infogan",
            "kl-infogan",
            "Theorem 2, L_InfoGAN: -I_p + KL(p(z|x)||q(z|x)) + λ1 KL(p(x)||q(x)) "
            "+ λ2 KL(q(x)||p(x))",
            _lam("objective.params.lambda1", 0.1, 100.0),
            _lam("objective.params.lambda2", 0.1, 100.0),
        ),
        _family(
            "infogan",
            "infogan",
            "Section 2.5 item 3: -I_p + KL(p(z|x)||q(z|x)) + λ1 JS(p(x)||q(x))",
            _lam("objective.params.lambda1", 0.1, 100.0),
        ),
        _family(
            "kl-infobigan",
            "kl-infobigan",
            "Theorem 3, L_InfoBiGAN: α I_p + KL(p(z|x)||q(z|x)) + λ1 KL(p(x)||q(x)) "
            "+ λ2 KL(q(x)||p(x))",
            _alpha("objective.params.alpha"),
            _lam("objective.params.lambda1", 0.1, 100.0),
            _lam("objective.params.lambda2", 0.1, 100.0),
        ),
        _family(
            "lagrangian",
            None,
            "Definition 5: α1 I_p + α2 I_q + Σ λ_i D_i over chosen terms",
            _alpha("objective.alpha1"),
            _alpha("objective.alpha2"),
        ),
    ]
}
FAMILY_ALIASES = {"beta-vae": "beta-elbo", "infobigan": "kl-infobigan"}


@dataclass(frozen=True)
class Space:
    """The parameters one search samples; `family` is None for explicit `params` only."""

    params: tuple[Param, ...]
    family: str | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def __getitem__(self, key: str) -> Param:
        """A parameter by dotted key, short name, or (for a λ) any spelling of its term."""
        for param in self.params:
            if key in (param.key, param.name) or _same_term(key, param):
                return param
        raise KeyError(key)


# --------------------------------------------------------------------------- parsing


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
        base = _lam(f"objective.lambdas.{spelled.get(canonical, canonical)}", *LAMBDA_RANGE)
        param = _with_range(base, spec or {}, where)
        params[param.key] = param
    return params


def _explicit_default(experiment: Experiment, key: str) -> Param:
    """The default range shape of an explicit dotted key (λ keys: log, multiplier)."""
    if key.startswith("objective.lambdas."):
        term = key[len("objective.lambdas.") :]
        spelled = {_canonical(t, "objective.lambdas"): t for t in experiment.objective.lambdas}
        canonical = _canonical(term, f"space.params.{key}")
        return _lam(f"objective.lambdas.{spelled.get(canonical, canonical)}", 1.0, 2.0)
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
        raise ConfigError(
            f"{where}: negative λ range [{param.low:g}, {param.high:g}]: a Lagrange multiplier "
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
    from objectives.presets import get_preset

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
    from objectives.presets import get_preset

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


# --------------------------------------------------------------------------- compiling


def refusal(experiment: Experiment, point: Mapping[str, float]) -> str | None:
    """Why the compiler refuses the experiment at `point` (dotted key -> value), or None."""
    from objectives.compile import compile_objective

    try:
        compiled = compile_objective(experiment.with_values(point).objective)
    except (ConfigError, FamilyError) as error:
        return str(error)
    if not compiled.tractable:
        blocked = ", ".join(compiled.residual)
        return f"intractable: no toolbox computes it (residual terms: {blocked})"
    return None


def grid_points(space: Space, limit: int = GRID_LIMIT) -> Iterator[dict[str, float]]:
    """Corners and midpoints of the box over the objective's parameters (others at their
    middle), 3 values a parameter while 3^d <= limit, else corners, else a thinned sweep."""
    objective = [p for p in space.params if p.key.startswith("objective.")]
    fixed = {p.key: p.middle for p in space.params if not p.key.startswith("objective.")}
    per_param = 3 if 3 ** len(objective) <= limit else 2
    axes = [p.grid(per_param) for p in objective]
    total = per_param ** len(objective)
    stride = max(1, total // limit)
    for index, values in enumerate(itertools.product(*axes)):
        if index % stride == 0:
            yield {**fixed, **{p.key: v for p, v in zip(objective, values, strict=True)}}


def check_compiles(experiment: Experiment, space: Space) -> int:
    """Compile the grid of `grid_points`; raise ConfigError naming the refused region.

    Returns the number of points compiled. The region is described per parameter: the grid
    values at which every point was refused, else the refused points themselves.
    """
    refused: list[tuple[dict[str, float], str]] = []
    points = list(grid_points(space))
    for point in points:
        reason = refusal(experiment, point)
        if reason is not None:
            refused.append((point, reason))
    if refused:
        raise ConfigError(f"space: the compiler refuses {_region(space, points, refused)}")
    return len(points)


def _region(
    space: Space, points: list[dict[str, float]], refused: list[tuple[dict[str, float], str]]
) -> str:
    count = f"{len(refused)} of {len(points)} grid points of the box"
    if len(refused) == len(points):
        return f"the whole box ({count}): {refused[0][1]}"
    bad = {id(p) for p, _ in refused}
    sides = []
    for param in space.params:
        values = sorted({point[param.key] for point, _ in refused})
        all_bad = [v for v in values if all(id(p) in bad for p in points if p[param.key] == v)]
        if all_bad:
            sides.append(f"{param.key} = {', '.join(f'{v:g}' for v in all_bad)}")
    first, reason = refused[0]
    where = "; ".join(sides) if sides else _format_point(first)
    return f"{count}, where {where}: {reason} (narrow the ranges to leave that region out)"


def _format_point(point: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in point.items())


# --------------------------------------------------------------------------- starting points


def enqueue_presets(experiment: Experiment, space: Space) -> list[dict[str, float]]:
    """`search.enqueue_presets` as full points over the space's dotted keys, tried first.

    Each entry names parameters by short name (beta, lambda1, alpha2, a λ's term) or dotted
    key; a parameter left out takes the experiment's own value when inside its range, else
    the range's middle. A value outside its range is a ConfigError.
    """
    points = []
    for index, entry in enumerate(experiment.search.enqueue_presets):
        point = {p.key: _own_value(experiment, p) for p in space.params}
        for name, value in entry.items():
            where = f"search.enqueue_presets[{index}].{name}"
            try:
                param = space[name]
            except KeyError:
                raise ConfigError(
                    f"{where}: not a searched parameter (searched: {', '.join(space.keys)})"
                ) from None
            if not param.contains(float(value)):
                raise ConfigError(
                    f"{where}: {value:g} is outside the searched range [{param.low:g}, "
                    f"{param.high:g}]"
                )
            point[param.key] = float(value)
        points.append(point)
    return points


def _own_value(experiment: Experiment, param: Param) -> float:
    """The experiment's value at `param.key` (a preset's default included), if in range."""
    from objectives.presets import get_preset

    node: Any = experiment.to_dict()
    parts = param.key.split(".")
    if parts[:2] in (["objective", "params"], ["objective", "lambdas"]):
        parts = [*parts[:2], param.name]
        if parts[1] == "params" and experiment.objective.preset:
            defaults = get_preset(experiment.objective.preset).params
            node["objective"]["params"] = {**defaults, **node["objective"]["params"]}
    for part in parts:
        node = node.get(part) if isinstance(node, Mapping) else None
    if isinstance(node, int | float) and not isinstance(node, bool) and param.contains(node):
        return float(node)
    return param.middle


def _same_term(name: str, param: Param) -> bool:
    if "(" not in name or not param.key.startswith("objective.lambdas."):
        return False
    try:
        return canonical_term(name) == canonical_term(param.name)
    except FamilyError:
        return False


def describe(space: Space) -> Iterable[str]:
    """One line per parameter, for people: `key in [low, high] (log)`."""
    for p in space.params:
        yield f"{p.key} in [{p.low:g}, {p.high:g}]{' (log)' if p.log else ''}"
